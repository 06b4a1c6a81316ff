/** The consumer and its lanes: what is fetched queues per lane and is handed to the runner a lane at a time (see Lane). */
import { setTimeout as sleep } from 'node:timers/promises';
import { stageReader, type Consumer, type EachBatchPayload, type PartitionAssigner } from '../kafka.ts';
import type { ServiceMetrics } from '../metrics.ts';
import { RetryLog, untilSuccess } from '../retry.ts';
import { CommittedFollower, INITIAL_BYTES_PER_RECORD, type FollowedBatch } from '../wire/follower.ts';
import { readHeaders } from '../wire/record-batches.ts';
import { readStableOffsetsOf } from './offsets.ts';
import type { RunnerOptions, RunningConsumer } from './options.ts';
import { tpKey, type ConsumedRecord, type ProducedRecord, type TopicPartition } from './records.ts';
import { Stopped } from './retry.ts';

const exitOnFatal = (): never => process.exit(1);
/** A streaming transaction's piece, in input records, when maxRecordsPerTransaction does not set one. */
export const STREAM_PIECE_RECORDS = 1_000;
/** How often a member of an exactly-once stage's group (or a view's) heartbeats, and so learns of a rebalance. */
export const GROUP_HEARTBEAT_MS = 500;
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

/** What a lane's batch may ask of whoever fetched it. */
export interface BatchControl {
  /** Fetching still runs (the runner is not stopping). */
  isRunning(): boolean;
  /** Its partition is fetched again from an earlier offset since (a rewind): it must not be committed. */
  isStale(): boolean;
  /** Tells the group this member is alive while a batch's work is retried. */
  heartbeat(): Promise<void>;
  /** Commits the group's offsets (the sink, at least once). */
  commitOffsets(topics: { topic: string; partitions: { partition: number; offset: string }[] }[]): Promise<void>;
}

/** A batch fetched by the Kafka client's consumer. */
const consumerControl = (payload: EachBatchPayload): BatchControl => ({
  isRunning: payload.isRunning,
  isStale: payload.isStale,
  heartbeat: payload.heartbeat,
  commitOffsets: (topics) => payload.commitOffsetsIfNecessary({ topics }),
});

export interface BatchContext {
  readonly control: BatchControl;
  readonly source: TopicPartition;
  readonly records: ConsumedRecord[];
  /** The offset the fetch of this batch started at. */
  readonly fetchedOffset: string;
  readonly nextOffset: string;
  readonly highWatermark: string;
  /** The lane it was queued in; revoked when its partitions moved to another member. */
  readonly lane: { readonly revoked: boolean };
  /**
   * Lets its records go once processed (the lean reader's batches): they are made again from the
   * fetched bytes if the batch is read again (a transaction retried in place).
   */
  readonly release?: () => void;
}

/** Consecutive batches of one topic-partition as one (the newest payload, the last offset). */
export function mergeBatches(entries: readonly BatchContext[]): BatchContext {
  if (entries.length === 1) return entries[0]!;
  const first = entries[0]!;
  const { control, source, nextOffset, highWatermark, lane } = entries[entries.length - 1]!;
  // Field by field: a spread would copy the last part's release (and read its records once more).
  return { control, source, records: entries.flatMap((e) => e.records), fetchedOffset: first.fetchedOffset, nextOffset, highWatermark, lane };
}

/**
 * Queued batches, in order, up to `maxRecords` records, and the rest. A batch that crosses the
 * limit is split: its head ends after the last record taken (offsets are committed from there),
 * its tail is fetched from its first record if it has to be fetched again. At least one record
 * is taken. With `wholeCount` (how many records a batch holds, without making them), batches are
 * never split: whole ones are taken up to the limit (at least one), and the rest is left as it
 * was queued (its records not made yet, see BatchContext).
 */
export function takeUpTo<B extends { readonly records: readonly { readonly offset: string }[]; readonly nextOffset: string; readonly fetchedOffset: string }>(
  pending: readonly B[],
  maxRecords: number,
  wholeCount?: (batch: B) => number,
): { taken: B[]; rest: B[] } {
  const whole = wholeCount !== undefined;
  const countOf = wholeCount ?? ((batch: B) => batch.records.length);
  let count = 0;
  let wholeTaken = 0;
  while (wholeTaken < pending.length && count + countOf(pending[wholeTaken]!) <= maxRecords) count += countOf(pending[wholeTaken++]!);
  const taken = pending.slice(0, wholeTaken);
  const rest = pending.slice(wholeTaken);
  if (whole && taken.length === 0 && rest.length > 0) taken.push(rest.shift()!);
  if (rest.length === 0 || whole) return { taken, rest };
  const room = maxRecords - count;
  if (room > 0 || taken.length === 0) {
    const split = rest[0]!;
    const cut = Math.max(1, room);
    taken.push({ ...split, records: split.records.slice(0, cut) as B['records'], nextOffset: (BigInt(split.records[cut - 1]!.offset) + 1n).toString() });
    rest[0] = { ...split, records: split.records.slice(cut) as B['records'], fetchedOffset: split.records[cut]!.offset };
  }
  return { taken, rest };
}

/**
 * What of a streaming transaction's next piece follows what it holds already. `through` holds,
 * per topic-partition, the offset after the last record the transaction took, and is moved on.
 * After a rejoin, the lane's partitions are fetched again from the committed offsets, which do
 * not include the transaction in hand yet: the records it took come again, and taking them a
 * second time would produce their outputs twice in one transaction.
 */
export function followingTaken<B extends { readonly source: TopicPartition; readonly records: readonly { readonly offset: string }[]; readonly nextOffset: string; readonly fetchedOffset: string }>(
  entries: readonly B[],
  through: Map<string, bigint>,
): B[] {
  const out: B[] = [];
  for (const entry of entries) {
    const key = `${entry.source.topic}-${entry.source.partition}`;
    const after = through.get(key);
    const next = BigInt(entry.nextOffset);
    if (after !== undefined && next <= after) continue;
    let kept = entry;
    if (after !== undefined && entry.records.length > 0 && BigInt(entry.records[0]!.offset) < after) {
      kept = { ...entry, records: entry.records.filter((r) => BigInt(r.offset) >= after) as B['records'], fetchedOffset: after.toString() };
    }
    through.set(key, next);
    out.push(kept);
  }
  return out;
}

/**
 * How many more records the lanes can queue before fetching waits: what the lean reader asks a
 * fetch for, so that what is fetched and not yet queued stays within what the lanes would hold.
 * The sum over the lanes not revoked of each one's room in records and in bytes (at its records'
 * size), whichever is less; before any lane opened, one lane's worth.
 */
export function laneRoom(
  lanes: Iterable<Pick<Lane, 'revoked' | 'pendingRecords' | 'pendingBytes' | 'bytesPerRecord'>>,
  maxQueuedRecords: number,
  maxQueuedBytes: number,
): number {
  let room = 0;
  let open = 0;
  for (const lane of lanes) {
    if (lane.revoked) continue;
    open++;
    room += Math.max(0, Math.min(maxQueuedRecords - lane.pendingRecords, Math.floor((maxQueuedBytes - lane.pendingBytes) / Math.max(1, lane.bytesPerRecord))));
  }
  return open > 0 ? room : Math.min(maxQueuedRecords, Math.floor(maxQueuedBytes / INITIAL_BYTES_PER_RECORD));
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
  pending: Queued[];
  pendingBytes: number;
  pendingRecords: number;
  /** Its records' key and value bytes, on average (a moving one): its room in bytes as records. */
  bytesPerRecord: number;
  running: Promise<void> | undefined;
  /** When it last took its pending batches (performance.now()), for commitIntervalMs. */
  lastStart: number;
  /** Resolved (and replaced) whenever the lane takes its pending batches. */
  room: { promise: Promise<void>; resolve: () => void };
}

/** A batch as its lane queued it: how many records it holds and their bytes, counted when it was queued. */
interface Queued extends BatchContext {
  readonly count: number;
  readonly bytes: number;
}

function newRoom(): Lane['room'] {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const batchBytes = (records: readonly ConsumedRecord[]) => records.reduce((sum, r) => sum + (r.value?.length ?? 0) + (r.key?.length ?? 0), 0);

export function startConsumer(
  options: RunnerOptions & {
    /**
     * Who fetches: the lean reader following the group's assignment (the Kafka client's consumer
     * keeps the membership with every partition paused), or that consumer. The lean reader unless
     * KAFKA_STAGE_READER=kafkajs or the runner commits the group's offsets itself.
     */
    readonly fetcher?: 'lean' | 'consumer';
    /**
     * With the lean reader: records the runner will not process, told by their topic and headers
     * (see readHeaders), are left out without an object made for them; their offsets are
     * committed all the same. The Kafka client's consumer hands them over (the runner drops them).
     */
    readonly skipRecord?: ((topic: string, data: Buffer, headersAt: number) => boolean) | undefined;
  },
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
    // A member learns of a rebalance at its next heartbeat: an instance that joined waited up to
    // this long with nothing assigned while the others went on (3 s before, bench-orders --instances 2).
    heartbeatInterval: GROUP_HEARTBEAT_MS,
    retry: { initialRetryTime: 200, maxRetryTime: options.retryMaxMs ?? 10_000, retries: Number.MAX_SAFE_INTEGER },
    ...(assigner === undefined ? {} : { partitionAssigners: [assigner] }),
  });
  const lean = options.fetcher === 'consumer' ? undefined : stageReader(kafka);
  let stopping = false;
  /** Aborted on stop: ends a lane's wait for its commit interval. */
  const stopSignal = new AbortController();
  const isStopping = () => stopping;
  const lanes = new Map<string, Lane>();

  /** Resolved (and replaced) whenever any lane takes or drops its queued batches: the lean reader's wait for room. */
  let anyRoom = newRoom();
  const freed = (lane: Lane) => {
    lane.room.resolve();
    lane.room = newRoom();
    anyRoom.resolve();
    anyRoom = newRoom();
  };

  /** Drops a lane's queued batches; they were fetched but will be fetched again. */
  const dropPending = (lane: Lane): BatchContext[] => {
    const dropped = lane.pending;
    lane.pending = [];
    lane.pendingBytes = 0;
    lane.pendingRecords = 0;
    freed(lane);
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
      if (follower === undefined) consumer.seek({ topic: source.topic, partition: source.partition, offset: offset.toString() });
      else {
        const at = positions.get(source.topic);
        if (at === undefined || !at.has(source.partition)) continue;
        at.set(source.partition, Number(offset));
        rewoundAt.set(tpKey(source), ++handOvers);
      }
    }
    // The others go on from what their lanes have: fetched but not handed over is fetched again.
    if (follower !== undefined && from.size > 0) follower.assign(positions);
  };

  /** processLane may take more of the lane into the transaction in hand (see RunnerOptions.transactionStreamMs). */
  const streaming = (options.transactionStreamMs ?? 0) > 0;
  const maxRecords = options.maxRecordsPerTransaction ?? Number.POSITIVE_INFINITY;
  /**
   * A streaming transaction's pieces bound its memory, not what it commits: takes are whole
   * batches (never split), and the lean reader hands batches over in parts of at most a piece,
   * their records made when taken. A transaction of at most TRANSACTION_MAX_RECORDS takes exactly that.
   */
  const wholeTakes = streaming && !Number.isFinite(maxRecords);
  /** What one take holds: a streaming transaction's piece is bounded even when a transaction is not. */
  const takeRecords = wholeTakes ? STREAM_PIECE_RECORDS : maxRecords;
  /** What a lane queues before fetching waits, in records (a sink's writes take whatever is queued). */
  const maxQueuedRecords = QUEUED_TAKES * takeRecords;
  /** What a lane queues before fetching waits, in key and value bytes. */
  const maxQueuedBytes = 2 * maxBytesPerPartition;
  /** The lane's queued batches up to maxRecords records (see takeUpTo); what is left stays queued. */
  const takePending = (lane: Lane): BatchContext[] => {
    const { taken, rest } = takeUpTo(lane.pending, takeRecords, wholeTakes ? (entry) => entry.count : undefined);
    if (rest.length === 0) return dropPending(lane);
    lane.pending = rest;
    // What was taken comes off (each record is counted once however many pieces a backlog takes);
    // a batch split by takeUpTo is counted by its records.
    lane.pendingBytes -= taken.reduce((sum, entry) => sum + (wholeTakes ? entry.bytes : batchBytes(entry.records)), 0);
    lane.pendingRecords -= taken.reduce((sum, entry) => sum + (wholeTakes ? entry.count : entry.records.length), 0);
    freed(lane);
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
      /** Per topic-partition, the offset after the last record this transaction took. */
      const through = new Map(entries.map((e) => [tpKey(e.source), BigInt(e.nextOffset)] as const));
      const more = streaming
        ? () => {
            if (lane.pending.length === 0 || stopping || lane.revoked) return undefined;
            const next = followingTaken(takePending(lane), through);
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

  /**
   * Queues a fetched batch in its lane, and waits while that lane holds a lot (backpressure on
   * fetching). With the lean reader's `parts` (deferRecords) each part is queued as a batch of its
   * own, counted by `count` and `bytes`, its records made when a take reaches it; with whole takes
   * a batch without parts is queued in pieces of at most takeRecords records, so no take splits one.
   */
  const queue = async (source: TopicPartition, batch: Pick<FollowedBatch<ConsumedRecord>, 'records' | 'count' | 'bytes' | 'parts'>, fetchedOffset: string, nextOffset: string, highWatermark: string, control: BatchControl) => {
    const key = laneOf(source);
    let lane = lanes.get(key);
    if (lane === undefined) lanes.set(key, (lane = { key, revoked: false, pending: [], pendingBytes: 0, pendingRecords: 0, bytesPerRecord: INITIAL_BYTES_PER_RECORD, running: undefined, lastStart: -Infinity, room: newRoom() }));
    const { count, bytes } = batch;
    if (batch.parts === undefined) {
      const whole: Queued = { control, source, records: batch.records, count, bytes, fetchedOffset, nextOffset, highWatermark, lane };
      if (!wholeTakes || count <= takeRecords) lane.pending.push(whole);
      else {
        // Cut where a take would split it (takeUpTo), each piece counted anew.
        for (let rest = [whole]; rest.length > 0; ) {
          const cut = takeUpTo(rest, takeRecords);
          for (const piece of cut.taken) lane.pending.push({ ...piece, count: piece.records.length, bytes: batchBytes(piece.records) });
          rest = cut.rest;
        }
      }
    } else {
      for (const part of batch.parts) {
        lane.pending.push({
          control,
          source,
          get records() {
            return part.records;
          },
          count: part.count,
          bytes: part.bytes,
          release: () => part.release(),
          fetchedOffset: String(part.from),
          nextOffset: String(part.next),
          highWatermark,
          lane,
        });
      }
    }
    lane.pendingBytes += bytes;
    lane.pendingRecords += count;
    if (count > 0) lane.bytesPerRecord = 0.8 * lane.bytesPerRecord + (0.2 * bytes) / count;
    // The most any lane queued, and the largest batch: what bounds a lane's memory (README, Memory).
    if (lane.pendingRecords > (metrics.extra['queued_records_peak'] ?? 0)) metrics.extra['queued_records_peak'] = lane.pendingRecords;
    if (count > (metrics.extra['batch_records_peak'] ?? 0)) metrics.extra['batch_records_peak'] = count;
    kick(lane);
    // Backpressure: fetch no further while this lane has a lot queued (in bytes, and in records
    // when takes are bounded: a few takes' worth keeps it busy, more only holds memory).
    while ((lane.pendingBytes > maxQueuedBytes || lane.pendingRecords > maxQueuedRecords) && !stopping) await lane.room.promise;
  };

  /** The lean reader's fetches are sized to what the lanes can still queue (see laneRoom). */
  const room = () => laneRoom(lanes.values(), maxQueuedRecords, maxQueuedBytes);

  /**
   * With the lean reader: the next offset of each assigned partition after what was handed to its
   * lane (where fetching goes on from when the follower starts over), and a count of hand-overs
   * that tells a batch handed over before its partition was rewound (stale) from one after.
   */
  const positions = new Map<string, Map<number, number>>();
  let handOvers = 0;
  const rewoundAt = new Map<string, number>();
  const fetchLog = new RetryLog(logger, 'fetching');
  const follower =
    lean === undefined
      ? undefined
      : new CommittedFollower(
          {
            ...lean,
            // The runner's records as they are queued, headers and all (order-matcher's marks, dead letters' sources).
            makeRecord: (topic, partition, offset, key, value, timestamp, data, headersAt): ConsumedRecord => ({
              topic,
              partition,
              offset: String(offset),
              key,
              value,
              headers: readHeaders(data, headersAt),
              timestamp: String(timestamp),
            }),
            skip: options.skipRecord,
            // Records are made when a take reaches their part, so they die young (see deferRecords).
            deferRecords: wholeTakes ? takeRecords : undefined,
            maxWaitMs: options.fetchMaxWaitMs ?? 200,
            partitionMaxBytes: maxBytesPerPartition,
            maxBytes: options.maxBytes ?? 16 * 1024 * 1024,
            room: { records: room, freed: () => anyRoom.promise },
            onRetry: (reason) => fetchLog.failure(new Error(reason), 1_000),
          },
          async (batch: FollowedBatch<ConsumedRecord>) => {
            fetchLog.recovered();
            const at = positions.get(batch.topic);
            const from = at?.get(batch.partition);
            if (stopping || at === undefined || from === undefined) return;
            at.set(batch.partition, batch.next);
            // Only transaction markers or aborted records: nothing to process. Records left out by
            // `skipRecord` are queued as an empty batch: their offsets are committed like any others.
            if (batch.count === 0 && batch.skipped === 0) return;
            const { topic, partition } = batch;
            const k = `${topic}-${partition}`;
            const handOver = ++handOvers;
            const control: BatchControl = {
              isRunning: () => !stopping,
              isStale: () => (rewoundAt.get(k) ?? 0) > handOver,
              // The client's consumer fetches nothing, so its loop is free to heartbeat on its own.
              heartbeat: async () => undefined,
              commitOffsets: () => Promise.reject(new Error("the lean reader's batches are committed in transactions, not as the group's offsets")),
            };
            await queue({ topic, partition }, batch, String(from), String(batch.next), String(batch.highWatermark), control);
          },
        );
  /** Bumped by every join: only the latest one's committed offsets are followed from. */
  let joins = 0;

  const kick = (lane: Lane) => {
    if (lane.running !== undefined) return;
    lane.running = drain(lane).finally(() => {
      lane.running = undefined;
      if (lane.pending.length > 0 && !stopping) kick(lane);
    });
  };

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const join = ++joins;
    if (follower !== undefined) {
      // The lean reader fetches; the consumer only keeps this member in the group (it heartbeats while idle).
      consumer.pause(topics.map((topic) => ({ topic })));
      positions.clear();
      follower.assign(positions);
    }
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
    if (follower !== undefined) {
      // From the group's committed offsets, read as a transactional stage must read them (an open
      // transaction's offsets are waited for): what is below them is done.
      void untilSuccess('reading the committed offsets to fetch from', logger, () => readStableOffsetsOf(kafka, groupId, assigned), options.retryMaxMs).then(
        (committed) => {
          if (join !== joins || stopping) return;
          for (const tp of assigned) {
            let at = positions.get(tp.topic);
            if (at === undefined) positions.set(tp.topic, (at = new Map()));
            at.set(tp.partition, Number(committed.get(tpKey(tp)) ?? 0n));
          }
          logger.info({ groupId, from: Object.fromEntries([...committed].map(([k, v]) => [k, v.toString()])) }, 'fetching from the committed offsets');
          follower.assign(positions);
        },
        (err: unknown) => logger.error({ err, groupId }, 'reading the committed offsets failed'),
      );
    }
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
    logger.info({ groupId, reader: follower === undefined ? 'kafkajs' : 'wire' }, follower === undefined ? "the Kafka client's consumer fetches the stage's inputs" : "the lean reader fetches the stage's inputs; the Kafka client's consumer keeps the group membership");
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 6,
      eachBatch: async (payload) => {
        const { batch } = payload;
        // Stale: a seek is pending for this partition, so this batch is from before it. With the
        // lean reader nothing is fetched here (every partition is paused) but what a fetch sent
        // before the pause brought.
        if (follower !== undefined || batch.isEmpty() || stopping || payload.isStale()) return;
        const source = { topic: batch.topic, partition: batch.partition };
        const records = batch.messages.map((m) => toConsumed(batch.topic, batch.partition, m));
        const nextOffset = (BigInt(batch.lastOffset()) + 1n).toString();
        payload.resolveOffset(batch.lastOffset());
        await queue(source, { records, count: records.length, bytes: batchBytes(records) }, String((batch as unknown as { fetchedOffset: string | number }).fetchedOffset), nextOffset, batch.highWatermark, consumerControl(payload));
      },
    });
    logger.info({ groupId, topics }, 'consuming');
    return {
      stop: async () => {
        stopping = true;
        stopSignal.abort();
        for (const lane of lanes.values()) dropPending(lane);
        // Nothing more is fetched (a hand-over waiting for room was let go by dropPending).
        await follower?.stop();
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
