/**
 * Reconciliation's reading: some partitions of `fills`, each over an offset range, recomputed into
 * positions and checked against InfluxDB's fills of the same partitions. scripts/reconcile.ts runs
 * this in worker threads over disjoint sets of partitions (reconcile-worker.ts) and merges what
 * they find (mergeReadings); the comparison itself is in reconcile.ts.
 */
import { randomUUID } from 'node:crypto';
import { committedReaderOptions, fixedAssigner, readCommitted, TOPICS, type CommittedReaderOptions, type Kafka, type KafkaEnv } from '@tradeflow/shared';
import { addExact, InfluxComparison, readFill, readFillText, Recomputation, type Difference, type ReconciledFill, type Recomputed, type StoredFill } from './reconcile.ts';

/**
 * Where fills are read from: the lean reader of committed records (the default: Fetch requests on
 * its own connections, records decoded in place; TLS and SASL as configured) or the Kafka client's
 * consumer (RECONCILE_READER=kafkajs).
 */
export type FillSource = { readonly reader: 'wire'; readonly options: CommittedReaderOptions } | { readonly reader: 'kafkajs'; readonly kafka: Kafka; readonly fetchBytes: number };

/** The source asked for. */
export function fillSource(reader: 'wire' | 'kafkajs', env: KafkaEnv, kafka: () => Kafka, fetchBytes: number): FillSource {
  return reader === 'wire' ? { reader: 'wire', options: committedReaderOptions(env, 'reconcile', fetchBytes) } : { reader: 'kafkajs', kafka: kafka(), fetchBytes };
}

export interface PartitionRange {
  readonly partition: number;
  /** The first offset to read and the one after the last. */
  readonly start: bigint;
  readonly end: bigint;
}

export interface Window {
  /** Epoch seconds: fills of this time or later … */
  readonly from?: number | undefined;
  /** … and before this one; undefined: no bound. */
  readonly to?: number | undefined;
}

/** What reading some partitions found. */
export interface Reading {
  readonly accounts: Map<number, Recomputed>;
  readonly fills: number;
  readonly read: number;
  readonly unreadable: string[];
  /** Fills read that InfluxDB's fills given to this reading lack. */
  readonly missing: Difference[];
  /** InfluxDB's fills given to this reading that no fill read matched. */
  readonly leftover: StoredFill[];
  /** performance.timeOrigin + now() of the first record (ms since the epoch), if any. */
  readonly firstRecordAt: number | undefined;
}

/**
 * Reads these ranges of `fills` (committed records only), sums every fill in the window and checks
 * it against `stored` (when given). `onProgress` gets the records read so far, now and then.
 */
export async function readFillRanges(
  source: FillSource,
  ranges: readonly PartitionRange[],
  window: Window,
  stored: readonly StoredFill[] | undefined,
  onProgress: (read: number) => void,
): Promise<Reading> {
  const recomputation = new Recomputation();
  const comparison = stored === undefined ? undefined : new InfluxComparison(stored);
  const unreadable: string[] = [];
  const byPartition = new Map(ranges.filter((r) => r.end > r.start).map((r) => [r.partition, r]));
  const pending = new Set(byPartition.keys());
  let read = 0;
  let firstRecordAt: number | undefined;
  const { from, to } = window;
  const take = (fill: { ok: true; value: ReconciledFill } | { ok: false; reason: string }, partition: number, offset: number | string) => {
    read++;
    if (!fill.ok) {
      unreadable.push(`fills partition ${partition} offset ${offset}: ${fill.reason}`);
      return;
    }
    if ((from !== undefined && fill.value.timestamp < from) || (to !== undefined && fill.value.timestamp >= to)) return;
    recomputation.add(fill.value);
    comparison?.check(fill.value);
  };
  if (pending.size > 0 && source.reader === 'wire') {
    const offsetRanges = [...byPartition.values()].map((r) => ({ partition: r.partition, start: Number(r.start), end: Number(r.end) }));
    let reported = 0;
    await readCommitted(source.options, TOPICS.fills, offsetRanges, (partition, offset, data, _ks, _kl, valueStart, valueLength) => {
      firstRecordAt ??= performance.timeOrigin + performance.now();
      take(valueLength <= 0 ? { ok: false, reason: 'empty message' } : readFillText(data.toString('utf8', valueStart, valueStart + valueLength)), partition, offset);
      if (read - reported >= 50_000) onProgress((reported = read));
    });
  } else if (pending.size > 0 && source.reader === 'kafkajs') {
    const { kafka, fetchBytes } = source;
    const consumer = kafka.consumer({
      groupId: `reconcile-${randomUUID()}`,
      partitionAssigners: [fixedAssigner(TOPICS.fills, [...pending])],
      maxBytesPerPartition: fetchBytes,
      maxBytes: 4 * fetchBytes,
      maxWaitTimeInMs: 100,
    });
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    // Every batch ends here, an empty one too (only transaction markers): its last offset counts.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      const r = byPartition.get(payload.partition);
      if (r !== undefined && pending.has(payload.partition) && BigInt(payload.lastOffset) + 1n >= r.end) {
        pending.delete(payload.partition);
        if (pending.size === 0) finish();
      }
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [TOPICS.fills], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: byPartition.size,
      eachBatch: async ({ batch }) => {
        const r = byPartition.get(batch.partition);
        if (r === undefined || !pending.has(batch.partition)) return;
        firstRecordAt ??= performance.timeOrigin + performance.now();
        // Offsets are checked one by one only in a batch that crosses the range's edges.
        const whole = batch.messages.length > 0 && BigInt(batch.messages[0]!.offset) >= r.start && BigInt(batch.messages[batch.messages.length - 1]!.offset) < r.end;
        for (const m of batch.messages) {
          if (!whole) {
            const offset = BigInt(m.offset);
            if (offset < r.start || offset >= r.end) continue;
          }
          take(readFill(m.value), batch.partition, m.offset);
        }
        if (read % 50_000 < batch.messages.length) onProgress(read);
      },
    });
    for (const r of byPartition.values()) consumer.seek({ topic: TOPICS.fills, partition: r.partition, offset: r.start.toString() });
    await finished;
    await consumer.disconnect();
  }
  onProgress(read);
  return {
    accounts: recomputation.accounts,
    fills: recomputation.fills,
    read,
    unreadable,
    missing: comparison?.missing ?? [],
    leftover: comparison?.leftover() ?? [],
    firstRecordAt,
  };
}

/**
 * The readings of disjoint partitions as one. An account's fills are in one partition (they are
 * keyed by it), but if one's were not, its sums from each reading are added; a fill that one
 * reading missed in its share of InfluxDB and another found left over in its share is matched.
 */
export function mergeReadings(readings: readonly Reading[]): Reading {
  const [first, ...rest] = readings;
  if (first === undefined) return { accounts: new Map(), fills: 0, read: 0, unreadable: [], missing: [], leftover: [], firstRecordAt: undefined };
  const accounts = first.accounts;
  for (const reading of rest) {
    for (const [taxpayer, theirs] of reading.accounts) {
      const ours = accounts.get(taxpayer);
      if (ours === undefined) {
        accounts.set(taxpayer, theirs);
        continue;
      }
      for (const [symbol, shares] of theirs.shares) ours.shares.set(symbol, addExact(ours.shares.get(symbol) ?? 0, shares));
      ours.cash = addExact(ours.cash, theirs.cash);
      ours.fills += theirs.fills;
    }
  }
  const leftover = new Map(readings.flatMap((r) => r.leftover).map((f) => [f.fill_id, f]));
  const missing = readings.flatMap((r) => r.missing).filter((d) => !(d.kind === 'missing in InfluxDB' && leftover.delete(d.fill_id)));
  const starts = readings.map((r) => r.firstRecordAt).filter((t) => t !== undefined);
  return {
    accounts,
    fills: readings.reduce((n, r) => n + r.fills, 0),
    read: readings.reduce((n, r) => n + r.read, 0),
    unreadable: readings.flatMap((r) => r.unreadable),
    missing,
    leftover: [...leftover.values()],
    firstRecordAt: starts.length === 0 ? undefined : Math.min(...starts),
  };
}

/** Partitions shared out over `count` workers, the largest first to the one with the fewest records. */
export function shareOut(ranges: readonly PartitionRange[], count: number): PartitionRange[][] {
  const shares: { ranges: PartitionRange[]; records: bigint }[] = Array.from({ length: count }, () => ({ ranges: [], records: 0n }));
  for (const r of [...ranges].sort((a, b) => (b.end - b.start > a.end - a.start ? 1 : -1))) {
    const least = shares.reduce((min, s) => (s.records < min.records ? s : min));
    least.ranges.push(r);
    least.records += r.end - r.start;
  }
  return shares.map((s) => s.ranges).filter((s) => s.length > 0);
}
