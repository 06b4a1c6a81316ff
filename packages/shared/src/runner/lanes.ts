/** The consumer and its lanes: what is fetched queues per lane and is handed to the runner a lane at a time (see Lane). */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, EachBatchPayload, PartitionAssigner } from '../kafka.ts';
import type { ServiceMetrics } from '../metrics.ts';
import { RetryLog, untilSuccess } from '../retry.ts';
import type { RunnerOptions, RunningConsumer } from './options.ts';
import type { ConsumedRecord, ProducedRecord, TopicPartition } from './records.ts';
import { Stopped } from './retry.ts';

const exitOnFatal = (): never => process.exit(1);
/** A streaming transaction's piece, in input records, when maxRecordsPerTransaction does not set one. */
export const STREAM_PIECE_RECORDS = 2_000;
/** How many takes' worth of records a lane queues before fetching waits for it. */
export const QUEUED_TAKES = 4;

export function toConsumed(topic: string, partition: number, m: EachBatchPayload['batch']['messages'][number]): ConsumedRecord {
  return { topic, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers ?? {}, timestamp: m.timestamp };
}

/** The entry under `key`, opened on first use; a failed opening is forgotten so the next call retries. */
export function openOnce<K, V>(entries: Map<K, Promise<V>>, key: K, open: () => Promise<V>): Promise<V> {
  let entry = entries.get(key);
  if (entry === undefined) {
    entry = open();
    entries.set(key, entry);
    entry.catch(() => entries.delete(key));
  }
  return entry;
}

export function countBatch(metrics: ServiceMetrics, consumed: number, outputs: readonly ProducedRecord[]): void {
  addCounts(metrics, { consumed, ...countOutputs(outputs) });
}

export interface BatchCounts {
  readonly consumed: number;
  readonly produced: number;
  readonly dlq: number;
}

/** Outputs counted: dead letters apart from the rest. */
export function countOutputs(outputs: readonly ProducedRecord[]): { produced: number; dlq: number } {
  let dlq = 0;
  for (const out of outputs) if (out.topic.endsWith('.dlq')) dlq++;
  return { produced: outputs.length - dlq, dlq };
}

export function addCounts(metrics: ServiceMetrics, counts: BatchCounts): void {
  metrics.consumed += counts.consumed;
  metrics.produced += counts.produced;
  metrics.dlq += counts.dlq;
}

export interface BatchContext {
  readonly payload: EachBatchPayload;
  readonly source: TopicPartition;
  readonly records: ConsumedRecord[];
  /** The offset the fetch of this batch started at. */
  readonly fetchedOffset: string;
  readonly nextOffset: string;
  readonly highWatermark: string;
  /** The lane it was queued in; revoked when its partitions moved to another member. */
  readonly lane: { readonly revoked: boolean };
}

/** Consecutive batches of one topic-partition as one (the newest payload, the last offset). */
export function mergeBatches(entries: readonly BatchContext[]): BatchContext {
  if (entries.length === 1) return entries[0]!;
  const first = entries[0]!;
  const last = entries[entries.length - 1]!;
  return { ...last, fetchedOffset: first.fetchedOffset, records: entries.flatMap((e) => e.records) };
}

/**
 * Queued batches, in order, up to `maxRecords` records, and the rest. A batch that crosses the
 * limit is split: its head ends after the last record taken (offsets are committed from there),
 * its tail is fetched from its first record if it has to be fetched again. At least one record
 * is taken.
 */
export function takeUpTo<B extends { readonly records: readonly { readonly offset: string }[]; readonly nextOffset: string; readonly fetchedOffset: string }>(
  pending: readonly B[],
  maxRecords: number,
): { taken: B[]; rest: B[] } {
  let count = 0;
  let whole = 0;
  while (whole < pending.length && count + pending[whole]!.records.length <= maxRecords) count += pending[whole++]!.records.length;
  const taken = pending.slice(0, whole);
  const rest = pending.slice(whole);
  if (rest.length === 0) return { taken, rest };
  const room = maxRecords - count;
  if (room > 0 || taken.length === 0) {
    const split = rest[0]!;
    const cut = Math.max(1, room);
    taken.push({ ...split, records: split.records.slice(0, cut) as B['records'], nextOffset: (BigInt(split.records[cut - 1]!.offset) + 1n).toString() });
    rest[0] = { ...split, records: split.records.slice(cut) as B['records'], fetchedOffset: split.records[cut]!.offset };
  }
  return { taken, rest };
}

/** Splits a lane's batches into runs of the same topic-partition, in order. */
export function runsBySource(entries: readonly BatchContext[]): BatchContext[] {
  const runs: BatchContext[][] = [];
  for (const entry of entries) {
    const run = runs[runs.length - 1];
    if (run !== undefined && run[0]!.source.topic === entry.source.topic && run[0]!.source.partition === entry.source.partition) run.push(entry);
    else runs.push([entry]);
  }
  return runs.map(mergeBatches);
}

/**
 * A lane is the unit that is processed in order: a slot for the exactly-once runners (all its
 * topic-partitions), a topic-partition for the sink. Fetching does not wait for a lane's
 * transaction or write: batches queue up in their lane while it is busy and the lane takes
 * everything queued as its next one. So one slow lane does not hold up the others, and batches
 * grow with the load instead of the number of transactions.
 */
export interface Lane {
  readonly key: string;
  /** Its partitions were assigned to another member: what it has in hand is given up. */
  revoked: boolean;
  pending: BatchContext[];
  pendingBytes: number;
  pendingRecords: number;
  running: Promise<void> | undefined;
  /** When it last took its pending batches (performance.now()), for commitIntervalMs. */
  lastStart: number;
  /** Resolved (and replaced) whenever the lane takes its pending batches. */
  room: { promise: Promise<void>; resolve: () => void };
}

function newRoom(): Lane['room'] {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const batchBytes = (records: readonly ConsumedRecord[]) => records.reduce((sum, r) => sum + (r.value?.length ?? 0) + (r.key?.length ?? 0), 0);

export function startConsumer(
  options: RunnerOptions,
  laneOf: (source: TopicPartition) => string,
  /**
   * Processes a lane's queued batches (in fetch order), committing them or throwing Stopped. With
   * `more`, it may take the lane's next batches into the same transaction (undefined: nothing more
   * now); what it took is fetched again if it throws.
   */
  processLane: (entries: readonly BatchContext[], isStopping: () => boolean, more?: () => BatchContext[] | undefined) => Promise<void>,
  onAssignment: (assigned: readonly TopicPartition[], lanes: ReadonlyMap<string, Lane>, group: { readonly generationId: number; readonly memberId: string }) => Promise<void>,
  onStop: () => Promise<void>,
  assigner?: PartitionAssigner,
): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId, topics } = options;
  const maxBytesPerPartition = options.maxBytesPerPartition ?? 2 * 1024 * 1024;
  const consumer: Consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxBytesPerPartition,
    maxBytes: options.maxBytes ?? 16 * 1024 * 1024,
    minBytes: options.fetchMinBytes ?? 1,
    maxWaitTimeInMs: options.fetchMaxWaitMs ?? 200,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    retry: { initialRetryTime: 200, maxRetryTime: options.retryMaxMs ?? 10_000, retries: Number.MAX_SAFE_INTEGER },
    ...(assigner === undefined ? {} : { partitionAssigners: [assigner] }),
  });
  let stopping = false;
  /** Aborted on stop: ends a lane's wait for its commit interval. */
  const stopSignal = new AbortController();
  const isStopping = () => stopping;
  const lanes = new Map<string, Lane>();

  /** Drops a lane's queued batches; they were fetched but will be fetched again. */
  const dropPending = (lane: Lane): BatchContext[] => {
    const dropped = lane.pending;
    lane.pending = [];
    lane.pendingBytes = 0;
    lane.pendingRecords = 0;
    lane.room.resolve();
    lane.room = newRoom();
    return dropped;
  };

  /**
   * A lane gave its batches up uncommitted (the partition moved, or the runner stops): forget what
   * is queued behind them and fetch again from the first of them, so nothing is skipped if the
   * partition stays here.
   */
  const rewind = (lane: Lane, abandoned: readonly Pick<BatchContext, 'source' | 'fetchedOffset'>[]) => {
    const from = new Map<string, { source: TopicPartition; offset: bigint }>();
    for (const entry of [...abandoned, ...dropPending(lane)]) {
      const key = `${entry.source.topic}-${entry.source.partition}`;
      const offset = BigInt(entry.fetchedOffset);
      const known = from.get(key);
      if (known === undefined || offset < known.offset) from.set(key, { source: entry.source, offset });
    }
    if (stopping) return;
    for (const { source, offset } of from.values()) {
      logger.info({ ...source, offset: offset.toString() }, 'fetching again from the first uncommitted batch');
      consumer.seek({ topic: source.topic, partition: source.partition, offset: offset.toString() });
    }
  };

  /** processLane may take more of the lane into the transaction in hand (see RunnerOptions.transactionStreamMs). */
  const streaming = (options.transactionStreamMs ?? 0) > 0;
  const maxRecords = options.maxRecordsPerTransaction ?? Number.POSITIVE_INFINITY;
  /** What one take holds: a streaming transaction's piece is bounded even when a transaction is not. */
  const takeRecords = streaming && !Number.isFinite(maxRecords) ? STREAM_PIECE_RECORDS : maxRecords;
  /** What a lane queues before fetching waits, in records (a sink's writes take whatever is queued). */
  const maxQueuedRecords = QUEUED_TAKES * takeRecords;
  /** The lane's queued batches up to maxRecords records (see takeUpTo); what is left stays queued. */
  const takePending = (lane: Lane): BatchContext[] => {
    const { taken, rest } = takeUpTo(lane.pending, takeRecords);
    if (rest.length === 0) return dropPending(lane);
    lane.pending = rest;
    // What was taken comes off (each record is counted once however many pieces a backlog takes).
    lane.pendingBytes -= taken.reduce((sum, entry) => sum + batchBytes(entry.records), 0);
    lane.pendingRecords -= taken.reduce((sum, entry) => sum + entry.records.length, 0);
    lane.room.resolve();
    lane.room = newRoom();
    return taken;
  };

  const interval = options.commitIntervalMs ?? 0;
  const drain = async (lane: Lane) => {
    while (lane.pending.length > 0 && !stopping) {
      const wait = lane.lastStart + interval - performance.now();
      if (wait > 0) {
        await sleep(wait, undefined, { signal: stopSignal.signal }).catch(() => undefined);
        if (lane.pending.length === 0 || stopping) break;
      }
      lane.lastStart = performance.now();
      const entries = takePending(lane);
      // What the transaction took, without the records (they are let go once processed): where to
      // fetch again from if it fails, and each partition's lag once it committed.
      const taken = entries.map(({ source, fetchedOffset, nextOffset, highWatermark }) => ({ source, fetchedOffset, nextOffset, highWatermark }));
      const more = streaming
        ? () => {
            if (lane.pending.length === 0 || stopping || lane.revoked) return undefined;
            const next = takePending(lane);
            for (const { source, fetchedOffset, nextOffset, highWatermark } of next) taken.push({ source, fetchedOffset, nextOffset, highWatermark });
            return next;
          }
        : undefined;
      try {
        await processLane(entries, isStopping, more);
        // In fetch order, so each partition's lag ends at its newest batch.
        for (const entry of taken) {
          metrics.batches++;
          metrics.setLag(entry.source.topic, entry.source.partition, Math.max(0, Number(BigInt(entry.highWatermark) - BigInt(entry.nextOffset))));
        }
      } catch (error) {
        if (!(error instanceof Stopped)) logger.error({ lane: lane.key, err: error }, 'processing failed; the batches will be fetched again');
        rewind(lane, taken);
      }
    }
  };

  const kick = (lane: Lane) => {
    if (lane.running !== undefined) return;
    lane.running = drain(lane).finally(() => {
      lane.running = undefined;
      if (lane.pending.length > 0 && !stopping) kick(lane);
    });
  };

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const assigned = Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) =>
      partitions.map((partition) => ({ topic, partition })),
    );
    logger.info({ groupId, assigned: assigned.map((tp) => `${tp.topic}-${tp.partition}`) }, 'joined consumer group');
    metrics.extra[`assigned:${groupId}`] = assigned.length;
    const assignedLanes = new Set(assigned.map(laneOf));
    for (const lane of lanes.values()) lane.revoked = !assignedLanes.has(lane.key);
    // After a join the consumer fetches every assigned partition again from its committed offset,
    // so what was queued is fetched again; what is in flight finishes or fails on its own.
    for (const lane of lanes.values()) dropPending(lane);
    void onAssignment(assigned, lanes, { generationId: payload.generationId, memberId: payload.memberId }).catch((err: unknown) => logger.error({ err }, 'releasing revoked partitions failed'));
  });
  const crashes = new RetryLog(logger, 'consuming');
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (payload.restart) {
      crashes.failure(payload.error, options.retryMaxMs ?? 10_000, { groupId });
      return;
    }
    if (stopping) return;
    // kafkajs gives up on errors it deems permanent: without its consumer the service would sit
    // idle, so it exits and is restarted (compose's restart policy, run-local's supervision).
    logger.fatal({ err: payload.error, groupId }, 'the Kafka consumer stopped on an error it does not retry; exiting so that the service is restarted');
    (options.onFatal ?? exitOnFatal)(payload.error);
  });
  consumer.on(consumer.events.FETCH_START, () => crashes.recovered({ groupId }));

  const start = async (): Promise<RunningConsumer> => {
    await untilSuccess('joining Kafka', logger, async () => {
      await consumer.connect();
      await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    }, options.retryMaxMs);
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 6,
      eachBatch: async (payload) => {
        const { batch } = payload;
        // Stale: a seek is pending for this partition, so this batch is from before it.
        if (batch.isEmpty() || stopping || payload.isStale()) return;
        const source = { topic: batch.topic, partition: batch.partition };
        const records = batch.messages.map((m) => toConsumed(batch.topic, batch.partition, m));
        const nextOffset = (BigInt(batch.lastOffset()) + 1n).toString();
        const key = laneOf(source);
        let lane = lanes.get(key);
        if (lane === undefined) lanes.set(key, (lane = { key, revoked: false, pending: [], pendingBytes: 0, pendingRecords: 0, running: undefined, lastStart: -Infinity, room: newRoom() }));
        lane.pending.push({ payload, source, records, fetchedOffset: String((batch as unknown as { fetchedOffset: string | number }).fetchedOffset), nextOffset, highWatermark: batch.highWatermark, lane });
        lane.pendingBytes += batchBytes(records);
        lane.pendingRecords += records.length;
        // The most any lane queued, and the largest batch: what bounds a lane's memory (README, Memory).
        if (lane.pendingRecords > (metrics.extra['queued_records_peak'] ?? 0)) metrics.extra['queued_records_peak'] = lane.pendingRecords;
        if (records.length > (metrics.extra['batch_records_peak'] ?? 0)) metrics.extra['batch_records_peak'] = records.length;
        payload.resolveOffset(batch.lastOffset());
        kick(lane);
        // Backpressure: fetch no further while this lane has a lot queued (in bytes, and in records
        // when takes are bounded: a few takes' worth keeps it busy, more only holds memory).
        while ((lane.pendingBytes > 2 * maxBytesPerPartition || lane.pendingRecords > maxQueuedRecords) && !stopping) await lane.room.promise;
      },
    });
    logger.info({ groupId, topics }, 'consuming');
    return {
      stop: async () => {
        stopping = true;
        stopSignal.abort();
        for (const lane of lanes.values()) dropPending(lane);
        // The transactions in hand finish while this member is still in the group: kafkajs leaves
        // the group in stop(), and with one producer per instance a commit after that is refused
        // (UNKNOWN_MEMBER_ID) and the batch is done again by the next owner.
        await Promise.all([...lanes.values()].map((lane) => lane.running));
        await consumer.stop();
        await consumer.disconnect();
        await onStop();
        logger.info({ groupId }, 'consumer stopped');
      },
    };
  };
  return start();
}
