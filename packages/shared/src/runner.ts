/**
 * The one consume → handle → produce/write → commit loop that every service uses, so delivery
 * semantics live in this file only.
 *
 * - runTransform: Kafka in, Kafka out, exactly once. Input partitions are grouped into slots
 *   (partition p of every input topic is in slot p mod `slots`); the group assigns whole slots, and
 *   each slot has one transactional producer (transactional id = prefix + slot), so whoever owns a
 *   slot fences any earlier owner (a crashed process or a zombie after a rebalance). The outputs of
 *   everything a slot has fetched and the consumer offsets after it are committed in one
 *   transaction. When a slot's producer is (re)initialised the group's committed offsets are read
 *   again, and records below them (committed by an earlier owner) are skipped.
 * - runSink: Kafka in, an external store out (InfluxDB), at least once with idempotent writes:
 *   offsets are committed only after the store acknowledged the batch.
 * - runStateful: Kafka in, Kafka out, exactly once, with state. A task is partition p of every
 *   input topic (co-partitioned, in the same slot); its state is rebuilt from partition p of a
 *   changelog topic (or opened from a durable store that was checkpointed with the committed
 *   offsets, when they still match), and each transaction of the slot commits its outputs, its tasks' state changes
 *   (to their changelog partitions) and its input offsets together. With `applyOwnOutputs`, an
 *   output to one of its own input topics whose partition is in the same slot is applied to that
 *   task's state in the same transaction (one hop less) and marked, and skipped when read back.
 *
 * Fetching does not wait for transactions: batches queue in their slot's lane while it commits,
 * and the lane takes everything queued as its next transaction (see Lane).
 *
 * All retry with capped exponential backoff while Kafka or the store is unreachable, and stop
 * cleanly: stop() lets the batch in hand finish (or abandons it uncommitted if it cannot), then
 * leaves the group.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, PartitionAssigner, Producer } from 'kafkajs';
import { defaultPartitioner, eachToEnd, slotAssigner, slotOf, type ChangelogEntry } from './kafka.ts';
import { ConfigError } from './config.ts';
import type { Logger } from './logger.ts';
import type { ServiceMetrics } from './metrics.ts';
import { RetryLog, untilSuccess } from './retry.ts';

export interface ConsumedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: IHeaders;
  /** Broker or producer timestamp, epoch milliseconds as a string. */
  readonly timestamp: string;
}

export interface ProducedRecord {
  readonly topic: string;
  readonly key: string | Buffer | null;
  /** null is a tombstone (deletes the key from a compacted topic). */
  readonly value: string | Buffer | null;
  readonly headers?: Record<string, string | Buffer>;
  /** An explicit partition; by default the key decides. */
  readonly partition?: number;
}

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

export interface RunnerOptions {
  readonly kafka: Kafka;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Upper bound of the backoff between retries. */
  readonly retryMaxMs?: number;
  /** Max bytes fetched per partition and request; bounds the size of one batch. */
  readonly maxBytesPerPartition?: number;
  readonly partitionsConsumedConcurrently?: number;
  /** A fetch returns once this many bytes are there or fetchMaxWaitMs passed (batching vs latency). */
  readonly fetchMinBytes?: number;
  readonly fetchMaxWaitMs?: number;
  /**
   * Exactly-once runners: partition p of every input topic belongs to slot p mod slots; a slot is
   * assigned whole to one member and committed by one transactional producer. Fewer slots mean
   * fewer, larger transactions (and fewer producers holding back each output partition's last
   * stable offset); more slots let more members share the work. Every member of a group must use
   * the same number.
   */
  readonly slots?: number;
  /**
   * The least time between the starts of a lane's transactions (or sink writes): work arriving
   * sooner waits and joins the next one; a lane idle for longer starts at once. 0 (the default
   * here; the services take COMMIT_INTERVAL_MS, 20 ms) starts one as soon as the last one ends.
   */
  readonly commitIntervalMs?: number;
  /**
   * The most input records a lane's transaction (or sink write) takes of what is queued (a batch
   * is split at the limit); unlimited by default here (the services take TRANSACTION_MAX_RECORDS).
   */
  readonly maxRecordsPerTransaction?: number;
  /** Called when the consumer stopped for good on an error; by default the process exits 1. */
  readonly onFatal?: (error: Error) => void;
}

const exitOnFatal = (): never => process.exit(1);

export interface TransformOptions extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Pure with respect to Kafka: returns the records to produce for these input records. */
  readonly handle: (records: readonly ConsumedRecord[], source: TopicPartition) => readonly ProducedRecord[] | Promise<readonly ProducedRecord[]>;
}

export interface SinkOptions extends RunnerOptions {
  /**
   * Must be idempotent: a batch is written again after a crash between write and commit. Returns
   * the records to produce (e.g. dead letters for what the store refused) before the offsets are
   * committed: at least once, like the write.
   */
  readonly write: (records: readonly ConsumedRecord[], source: TopicPartition) => Promise<readonly ProducedRecord[] | void>;
}

export interface RunningConsumer {
  /** Stops fetching, lets the batch in hand finish, commits and leaves the group. */
  stop(): Promise<void>;
}

const INITIAL_BACKOFF_MS = 100;

/**
 * A produce request carries one record batch per partition, and the broker refuses batches above
 * message.max.bytes (1 MiB by default). Input batches can be larger than that (a backlog fetched
 * at maxBytesPerPartition), so outputs are sent in chunks well below it.
 */
const MAX_PRODUCE_CHUNK_BYTES = 512 * 1024;

type OutgoingMessage = { key: string | Buffer | null; value: string | Buffer | null; headers?: Record<string, string | Buffer>; partition?: number };
type TopicMessages = { topic: string; messages: OutgoingMessage[] };

function recordSize(record: ProducedRecord): number {
  let size = 64 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  if (record.headers !== undefined) for (const [name, value] of Object.entries(record.headers)) size += name.length + value.length + 8;
  return size;
}

/** Groups outputs by topic, cut into chunks of at most MAX_PRODUCE_CHUNK_BYTES, in order. */
export function produceChunks(outputs: readonly ProducedRecord[], maxBytes = MAX_PRODUCE_CHUNK_BYTES): TopicMessages[][] {
  const chunks: TopicMessages[][] = [];
  let byTopic = new Map<string, TopicMessages>();
  let bytes = 0;
  for (const out of outputs) {
    const size = recordSize(out);
    if (bytes > 0 && bytes + size > maxBytes) {
      chunks.push([...byTopic.values()]);
      byTopic = new Map();
      bytes = 0;
    }
    let entry = byTopic.get(out.topic);
    if (entry === undefined) byTopic.set(out.topic, (entry = { topic: out.topic, messages: [] }));
    const message: OutgoingMessage = { key: out.key, value: out.value };
    if (out.headers !== undefined) message.headers = out.headers;
    if (out.partition !== undefined) message.partition = out.partition;
    entry.messages.push(message);
    bytes += size;
  }
  if (bytes > 0) chunks.push([...byTopic.values()]);
  return chunks;
}

class Stopped extends Error {}

function toConsumed(topic: string, partition: number, m: EachBatchPayload['batch']['messages'][number]): ConsumedRecord {
  return { topic, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers ?? {}, timestamp: m.timestamp };
}

/** The entry under `key`, opened on first use; a failed opening is forgotten so the next call retries. */
function openOnce<K, V>(entries: Map<K, Promise<V>>, key: K, open: () => Promise<V>): Promise<V> {
  let entry = entries.get(key);
  if (entry === undefined) {
    entry = open();
    entries.set(key, entry);
    entry.catch(() => entries.delete(key));
  }
  return entry;
}

/** A producer for one task's transactions: its id is stable, so a new owner fences the old one. */
function transactionalProducer(kafka: Kafka, transactionalId: string): Producer {
  return kafka.producer({
    transactionalId,
    idempotent: true,
    // Two requests in flight: a transaction adds its offsets while it adds its partitions and
    // produces (see commitWork). Produce requests stay one at a time: kafkajs holds a lock per
    // broker around each produce of an idempotent producer, and commitWork sends chunks in turn.
    maxInFlightRequests: 2,
    transactionTimeout: 60_000,
    createPartitioner: defaultPartitioner,
    // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS until the commit markers
    // are written (a few ms); kafkajs retries that, and its default first wait (300 ms) would cap a
    // partition at a few transactions a second.
    retry: { initialRetryTime: 5, maxRetryTime: 1_000, retries: 10 },
  });
}

function countBatch(metrics: ServiceMetrics, consumed: number, outputs: readonly ProducedRecord[]): void {
  metrics.consumed += consumed;
  for (const out of outputs) {
    if (out.topic.endsWith('.dlq')) metrics.dlq++;
    else metrics.produced++;
  }
}

/** Rejects when `promise` takes longer than `ms`, so a stuck call becomes a retried failure. */
async function withTimeout<T>(what: string, promise: Promise<T>, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

type Transaction = Awaited<ReturnType<Producer['transaction']>>;
type SendOffsetsArgs = Parameters<Transaction['sendOffsets']>[0];

/** The Kafka error codes in an error or its causes (kafkajs wraps protocol errors). */
function errorTypes(error: unknown): Set<string> {
  const types = new Set<string>();
  for (let e = error as { type?: string; cause?: unknown; originalError?: unknown } | undefined; e !== undefined && e !== null; e = (e.cause ?? e.originalError) as typeof e) {
    if (typeof e.type === 'string') types.add(e.type);
    if (types.size > 10) break;
  }
  return types;
}

const isConcurrentTransactions = (error: unknown) => errorTypes(error).has('CONCURRENT_TRANSACTIONS');

/** Another producer with our transactional id took over: the partition has a new owner. */
const FENCED = ['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING'];
/** The group is rebalancing or has moved on without us: give the batch up so the consumer can rejoin. */
const REBALANCING = ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID'];
const isAny = (error: unknown, codes: readonly string[]) => [...errorTypes(error)].some((t) => codes.includes(t));

/**
 * kafkajs does not retry AddOffsetsToTxn, and right after the previous commit the coordinator
 * answers CONCURRENT_TRANSACTIONS until that commit is complete. Retry it briefly in place rather
 * than abort a transaction whose records are already sent.
 */
async function sendOffsets(transaction: Transaction, args: SendOffsetsArgs): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await transaction.sendOffsets(args);
      return;
    } catch (error) {
      if (!isConcurrentTransactions(error) || attempt >= 50) throw error;
      await sleep(Math.min(100, 5 * attempt));
    }
  }
}

/** Times the steps of one operation into the service's metrics. */
class StepTimer {
  private readonly metrics: ServiceMetrics;
  private readonly started = performance.now();
  private last = this.started;

  constructor(metrics: ServiceMetrics) {
    this.metrics = metrics;
  }

  step(what: string): void {
    const now = performance.now();
    this.metrics.time(what, now - this.last);
    this.last = now;
  }

  total(what: string): void {
    this.metrics.time(what, performance.now() - this.started);
  }
}

interface BatchContext {
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
function mergeBatches(entries: readonly BatchContext[]): BatchContext {
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
function runsBySource(entries: readonly BatchContext[]): BatchContext[] {
  const runs: BatchContext[][] = [];
  for (const entry of entries) {
    const run = runs[runs.length - 1];
    if (run !== undefined && run[0]!.source.topic === entry.source.topic && run[0]!.source.partition === entry.source.partition) run.push(entry);
    else runs.push([entry]);
  }
  return runs.map(mergeBatches);
}

/** One log per runner and operation, shared by its lanes: an outage is logged once, not once per partition. */
const retryLogs = new WeakMap<RunnerOptions, Map<string, RetryLog>>();

function retryLogOf(options: RunnerOptions, what: string): RetryLog {
  let logs = retryLogs.get(options);
  if (logs === undefined) retryLogs.set(options, (logs = new Map()));
  let log = logs.get(what);
  if (log === undefined) logs.set(what, (log = new RetryLog(options.logger, `${what} (nothing is committed until it succeeds)`)));
  return log;
}

/** Runs `attempt` until it succeeds, the partition is taken away, or the runner stops. */
async function retrying(
  what: string,
  ctx: BatchContext,
  options: RunnerOptions,
  isStopping: () => boolean,
  attempt: () => Promise<void>,
): Promise<void> {
  const cap = options.retryMaxMs ?? 10_000;
  const log = retryLogOf(options, what);
  let backoff = INITIAL_BACKOFF_MS;
  for (;;) {
    if (isStopping() || ctx.lane.revoked || !ctx.payload.isRunning() || ctx.payload.isStale()) throw new Stopped();
    try {
      await attempt();
      if (log.failed > 0) {
        log.recovered({ ...ctx.source });
        options.metrics.healthy = true;
      }
      return;
    } catch (error) {
      if (error instanceof Stopped) throw error;
      if (isAny(error, FENCED) || isAny(error, REBALANCING)) {
        // Retrying would fence the partition's new owner in turn; leave the batch uncommitted to it.
        options.logger.warn({ ...ctx.source, err: error }, `${what} abandoned: the partition moved to another member`);
        throw new Stopped();
      }
      options.metrics.retries++;
      log.failure(error, backoff, { ...ctx.source });
      if (log.failed > 3) options.metrics.healthy = false;
      const until = Date.now() + backoff;
      while (Date.now() < until && !isStopping()) {
        await sleep(Math.min(250, until - Date.now()));
        try {
          await ctx.payload.heartbeat();
        } catch (heartbeatError) {
          if (isAny(heartbeatError, REBALANCING)) throw new Stopped();
        }
      }
      backoff = Math.min(cap, backoff * 2);
    }
  }
}

/**
 * A lane is the unit that is processed in order: a slot for the exactly-once runners (all its
 * topic-partitions), a topic-partition for the sink. Fetching does not wait for a lane's
 * transaction or write: batches queue up in their lane while it is busy and the lane takes
 * everything queued as its next one. So one slow lane does not hold up the others, and batches
 * grow with the load instead of the number of transactions.
 */
interface Lane {
  readonly key: string;
  /** Its partitions were assigned to another member: what it has in hand is given up. */
  revoked: boolean;
  pending: BatchContext[];
  pendingBytes: number;
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

function startConsumer(
  options: RunnerOptions,
  laneOf: (source: TopicPartition) => string,
  /** Processes a lane's queued batches (in fetch order), committing them or throwing Stopped. */
  processLane: (entries: readonly BatchContext[], isStopping: () => boolean) => Promise<void>,
  onAssignment: (assigned: readonly TopicPartition[], lanes: ReadonlyMap<string, Lane>) => Promise<void>,
  onStop: () => Promise<void>,
  assigner?: PartitionAssigner,
): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId, topics } = options;
  const maxBytesPerPartition = options.maxBytesPerPartition ?? 2 * 1024 * 1024;
  const consumer: Consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxBytesPerPartition,
    maxBytes: 16 * 1024 * 1024,
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
    lane.room.resolve();
    lane.room = newRoom();
    return dropped;
  };

  /**
   * A lane gave its batches up uncommitted (the partition moved, or the runner stops): forget what
   * is queued behind them and fetch again from the first of them, so nothing is skipped if the
   * partition stays here.
   */
  const rewind = (lane: Lane, abandoned: readonly BatchContext[]) => {
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

  const maxRecords = options.maxRecordsPerTransaction ?? Number.POSITIVE_INFINITY;
  /** The lane's queued batches up to maxRecords records (see takeUpTo); what is left stays queued. */
  const takePending = (lane: Lane): BatchContext[] => {
    const { taken, rest } = takeUpTo(lane.pending, maxRecords);
    if (rest.length === 0) return dropPending(lane);
    lane.pending = rest;
    lane.pendingBytes = rest.reduce((sum, entry) => sum + batchBytes(entry.records), 0);
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
      try {
        await processLane(entries, isStopping);
        // In fetch order, so each partition's lag ends at its newest batch.
        for (const entry of entries) {
          metrics.batches++;
          metrics.setLag(entry.source.topic, entry.source.partition, Math.max(0, Number(BigInt(entry.highWatermark) - BigInt(entry.nextOffset))));
        }
      } catch (error) {
        if (!(error instanceof Stopped)) logger.error({ lane: lane.key, err: error }, 'processing failed; the batches will be fetched again');
        rewind(lane, entries);
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
    void onAssignment(assigned, lanes).catch((err: unknown) => logger.error({ err }, 'releasing revoked partitions failed'));
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
        if (lane === undefined) lanes.set(key, (lane = { key, revoked: false, pending: [], pendingBytes: 0, running: undefined, lastStart: -Infinity, room: newRoom() }));
        lane.pending.push({ payload, source, records, fetchedOffset: String((batch as unknown as { fetchedOffset: string | number }).fetchedOffset), nextOffset, highWatermark: batch.highWatermark, lane });
        lane.pendingBytes += batchBytes(records);
        payload.resolveOffset(batch.lastOffset());
        kick(lane);
        // Backpressure: fetch no further while this lane has a lot queued.
        while (lane.pendingBytes > 2 * maxBytesPerPartition && !stopping) await lane.room.promise;
      },
    });
    logger.info({ groupId, topics }, 'consuming');
    return {
      stop: async () => {
        stopping = true;
        stopSignal.abort();
        for (const lane of lanes.values()) dropPending(lane);
        await consumer.stop();
        await Promise.all([...lanes.values()].map((lane) => lane.running));
        await consumer.disconnect();
        await onStop();
        logger.info({ groupId }, 'consumer stopped');
      },
    };
  };
  return start();
}

/**
 * The owner of one slot in this process: the slot's transactional producer (its id names the slot,
 * so whoever opens it fences any earlier owner and settles its open transaction) and the group's
 * committed offsets as they were right after that, per topic-partition.
 */
interface SlotOwner {
  readonly slot: number;
  readonly producer: Producer;
  /** The next offset to process per `topic-partition`; records below it were committed already. */
  readonly committed: Map<string, bigint>;
}

const tpKey = (tp: TopicPartition) => `${tp.topic}-${tp.partition}`;

async function openSlotOwner(options: RunnerOptions & { readonly transactionalIdPrefix: string }, admin: Admin, slot: number): Promise<SlotOwner> {
  const producer = transactionalProducer(options.kafka, `${options.transactionalIdPrefix}-slot-${slot}`);
  try {
    options.logger.debug({ slot }, 'opening slot: fencing earlier owners');
    // InitProducerId fences any earlier owner and completes its pending transaction, so the
    // committed offsets (and changelogs) read after it are final.
    await withTimeout("fencing the slot's transactional id", producer.connect());
    const committed = new Map<string, bigint>();
    for (const { topic, partitions } of await withTimeout('reading committed offsets', admin.fetchOffsets({ groupId: options.groupId, topics: [...options.topics] }))) {
      for (const { partition, offset } of partitions) committed.set(tpKey({ topic, partition }), BigInt(offset) < 0n ? 0n : BigInt(offset));
    }
    return { slot, producer, committed };
  } catch (error) {
    await producer.disconnect().catch(() => undefined);
    throw error;
  }
}

interface SlotWork {
  readonly run: BatchContext;
  /** The run's records at or above the committed offset. */
  readonly fresh: readonly ConsumedRecord[];
}

/** The runs of a lane with what is left of them once the records committed already are dropped. */
function freshWork(owner: SlotOwner, runs: readonly BatchContext[]): SlotWork[] {
  return runs
    .map((run) => {
      const floor = owner.committed.get(tpKey(run.source)) ?? 0n;
      // Records are in offset order: usually the first is fresh already and nothing is filtered.
      const first = run.records[0];
      const fresh = first === undefined || BigInt(first.offset) >= floor ? run.records : run.records.filter((r) => BigInt(r.offset) >= floor);
      return { run, fresh };
    })
    .filter((w) => w.fresh.length > 0);
}

/**
 * One transaction: the input offsets after `work`, then `records`, then commit. Offsets go first:
 * from the first record sent until the commit markers are written the output partitions' last
 * stable offset is held back (for every reader), so that stretch is kept short.
 */
async function commitWork(owner: SlotOwner, groupId: string, metrics: ServiceMetrics, work: readonly SlotWork[], records: readonly ProducedRecord[]): Promise<void> {
  const offsets = new Map<string, Map<number, string>>();
  for (const { run } of work) {
    let partitions = offsets.get(run.source.topic);
    if (partitions === undefined) offsets.set(run.source.topic, (partitions = new Map()));
    partitions.set(run.source.partition, run.nextOffset);
  }
  const timer = new StepTimer(metrics);
  const transaction = await owner.producer.transaction();
  try {
    // AddOffsetsToTxn + TxnOffsetCommit run alongside AddPartitionsToTxn + Produce: two round
    // trips before the commit instead of four. Both settle before the commit or the abort.
    const settled = await Promise.allSettled([
      sendOffsets(transaction, {
        consumerGroupId: groupId,
        topics: [...offsets].map(([topic, partitions]) => ({ topic, partitions: [...partitions].map(([partition, offset]) => ({ partition, offset })) })),
      }),
      (async () => {
        for (const chunk of produceChunks(records)) await transaction.sendBatch({ acks: -1, topicMessages: chunk });
      })(),
    ]);
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    timer.step('txn.send');
    await transaction.commit();
    timer.step('txn.commit');
    timer.total('txn');
  } catch (error) {
    await transaction.abort().catch(() => undefined);
    throw error;
  }
  for (const { run } of work) owner.committed.set(tpKey(run.source), BigInt(run.nextOffset));
}

/** Runs `fn` after every earlier call for the same key. */
function keyedLock<K>(): (key: K, fn: () => Promise<void>) => Promise<void> {
  const locks = new Map<K, Promise<void>>();
  return (key, fn) => {
    const previous = locks.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    locks.set(key, settled);
    void settled.then(() => {
      if (locks.get(key) === settled) locks.delete(key);
    });
    return next;
  };
}

const laneKey = (slot: number) => `slot-${slot}`;

/**
 * The slot machinery both exactly-once runners share: one owner per slot (opened on first use,
 * closed when the slot is revoked or a transaction fails), one transaction at a time per slot.
 * `prepare` turns a transaction's fresh work into the records to produce; `outputs` are what the
 * metrics count (the rest are changelog entries).
 */
async function runSlots<O extends SlotOwner>(
  options: RunnerOptions & { readonly transactionalIdPrefix: string },
  extend: (owner: SlotOwner) => O,
  prepare: (owner: O, work: readonly SlotWork[]) => Promise<{ outputs: readonly ProducedRecord[]; records: readonly ProducedRecord[] }>,
  /** After a transaction committed (a failure here starts over with a fresh owner, as a failed commit does). */
  committed?: (owner: O, work: readonly SlotWork[]) => void,
): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId } = options;
  const slots = options.slots ?? 1;
  const admin: Admin = kafka.admin();
  await untilSuccess('connecting to Kafka', logger, () => admin.connect(), options.retryMaxMs);
  const owners = new Map<number, Promise<O>>();
  const withSlotLock = keyedLock<number>();

  const ownerFor = (slot: number) => openOnce(owners, slot, async () => extend(await openSlotOwner(options, admin, slot)));
  const closeOwner = async (slot: number): Promise<void> => {
    const entry = owners.get(slot);
    owners.delete(slot);
    if (entry !== undefined) await (await entry.catch(() => undefined))?.producer.disconnect().catch(() => undefined);
  };

  const processLane = (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const runs = runsBySource(entries);
    const slot = slotOf(runs[0]!.source.partition, slots);
    return withSlotLock(slot, () =>
      retrying('transaction', runs[runs.length - 1]!, options, isStopping, async () => {
        const owner = await ownerFor(slot);
        const work = freshWork(owner, runs);
        if (work.length === 0) return;
        let outputs: readonly ProducedRecord[];
        try {
          const timer = new StepTimer(metrics);
          const prepared = await prepare(owner, work);
          outputs = prepared.outputs;
          timer.step('txn.process');
          await commitWork(owner, groupId, metrics, work, prepared.records);
          committed?.(owner, work);
        } catch (error) {
          // Start over with a fresh owner: re-initialising the producer settles the transaction's
          // outcome and re-reads the committed offsets (and any state), so an ambiguous commit is
          // never produced twice and uncommitted state changes are dropped.
          await closeOwner(slot);
          throw error;
        }
        countBatch(metrics, work.reduce((n, w) => n + w.fresh.length, 0), outputs);
      }),
    );
  };

  const onAssignment = async (assigned: readonly TopicPartition[], lanes: ReadonlyMap<string, Lane>) => {
    metrics.keepLagOnly(new Set(assigned.map(tpKey)));
    const keep = new Set(assigned.map((tp) => slotOf(tp.partition, slots)));
    const revoked = [...owners.keys()].filter((slot) => !keep.has(slot));
    await Promise.all(
      revoked.map(async (slot) => {
        await lanes.get(laneKey(slot))?.running;
        await withSlotLock(slot, () => closeOwner(slot));
      }),
    );
  };

  const onStop = async () => {
    await Promise.all([...owners.keys()].map((slot) => closeOwner(slot)));
    await admin.disconnect();
  };

  logger.info({ groupId, transactionalIdPrefix: options.transactionalIdPrefix, slots }, 'starting exactly-once stage');
  return startConsumer(options, (tp) => laneKey(slotOf(tp.partition, slots)), processLane, onAssignment, onStop, slotAssigner(slots, logger));
}

/** Kafka → Kafka, exactly once (see the file comment). */
export function runTransform(options: TransformOptions): Promise<RunningConsumer> {
  return runSlots(
    options,
    (owner) => owner,
    async (_owner, work) => {
      const outputs: ProducedRecord[] = [];
      for (const { run, fresh } of work) outputs.push(...(await options.handle(fresh, run.source)));
      return { outputs, records: outputs };
    },
  );
}

/** Kafka → external store, offsets committed after the store acknowledged (see the file comment). */
export async function runSink(options: SinkOptions): Promise<RunningConsumer> {
  /** For what the write returns to produce; opened on first use (a failed opening is tried again). */
  const producers = new Map<'out', Promise<Producer>>();
  const producerOnce = () =>
    openOnce(producers, 'out', async () => {
      const p = options.kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: defaultPartitioner });
      await p.connect();
      return p;
    });
  const processLane = async (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const ctx = mergeBatches(entries);
    await retrying('write', ctx, options, isStopping, async () => {
      const produce = (await options.write(ctx.records, ctx.source)) ?? [];
      if (produce.length === 0) return;
      const p = await producerOnce();
      for (const chunk of produceChunks(produce)) await p.sendBatch({ acks: -1, topicMessages: chunk });
      countBatch(options.metrics, 0, produce);
    });
    options.metrics.consumed += ctx.records.length;
    await retrying('offset commit', ctx, options, isStopping, () =>
      ctx.payload.commitOffsetsIfNecessary({
        topics: [{ topic: ctx.source.topic, partitions: [{ partition: ctx.source.partition, offset: ctx.nextOffset }] }],
      }),
    );
  };
  const onAssignment = async (assigned: readonly TopicPartition[]) => {
    options.metrics.keepLagOnly(new Set(assigned.map((tp) => `${tp.topic}-${tp.partition}`)));
  };
  const onStop = async () => {
    for (const producer of producers.values()) await (await producer.catch(() => undefined))?.disconnect().catch(() => undefined);
  };
  return startConsumer(options, (tp) => `${tp.topic}-${tp.partition}`, processLane, onAssignment, onStop);
}

export interface StateUpdate {
  readonly outputs: readonly ProducedRecord[];
  /** Changes of the task's state, written to its changelog partition (value null deletes a key). */
  readonly changelog: readonly ChangelogEntry[];
}

/** Rebuilds one task's state: `add` gets its changelog a batch at a time, oldest first (later entries of a key win, null deletes it). */
export interface StateRestorer<S> {
  add(entries: readonly ChangelogEntry[]): void | Promise<void>;
  /** The changelog is read to its end: the task's state. */
  end(): S;
}

/** The group's committed offsets of a task's inputs: the next offset per input topic. */
export type TaskOffsets = ReadonlyMap<string, bigint>;

export interface StatefulHandler<S> {
  /** Starts rebuilding a task's state from its changelog (a durable store first drops what it held of the task). */
  restore(partition: number): StateRestorer<S>;
  /** Applies one batch of one input topic-partition to the state, in place. */
  process(state: S, records: readonly ConsumedRecord[], source: TopicPartition): StateUpdate;
  /**
   * A durable store's state of a task, when it is exactly as of the group's committed offsets of
   * the task's inputs (so the changelog need not be read); undefined to restore it from the
   * changelog. Stages that apply their own outputs cannot use this (their state also changes
   * without their input offsets moving).
   */
  open?(partition: number, committed: TaskOffsets): S | undefined;
  /**
   * The task's state is now as of these committed offsets: called after every transaction that
   * committed work of the task and after a restore. A durable store writes the changes made since
   * the last call together with the offsets; until then they are held in memory (a transaction
   * that fails is never checkpointed: its state is dropped and opened or restored again).
   */
  checkpoint?(state: S, committed: TaskOffsets): void;
}

/** A StatefulHandler's restore for state that is rebuilt from all its changelog entries at once. */
export function restoreAll<S>(build: (entries: readonly ChangelogEntry[], partition: number) => S): (partition: number) => StateRestorer<S> {
  return (partition) => {
    const all: ChangelogEntry[] = [];
    return {
      add: (entries) => {
        for (const entry of entries) all.push(entry);
      },
      end: () => build(all, partition),
    };
  };
}

export interface StatefulOptions<S> extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Compacted topic with the same partition count as the inputs. */
  readonly changelogTopic: string;
  readonly handler: StatefulHandler<S>;
  /**
   * One of `topics` that the handler also writes to. Such an output whose partition (given, or the
   * key's under the default partitioner) is in the transaction's slot is applied to that
   * partition's state right away, in the same transaction, instead of after a trip through Kafka.
   * It is still written (to that partition, with APPLIED_HEADER = the group id) for every other
   * reader, and this group skips it when it reads it back: the record, the state change and the
   * input offsets commit together or not at all, so it is applied exactly once either way.
   */
  readonly applyOwnOutputs?: string;
  /** Called after a task's state was rebuilt (for metrics and logs). */
  readonly onRestored?: (partition: number, state: S, entries: number, ms: number) => void;
}

/** Marks a record a stateful stage applied when it produced it (value: the stage's group id). */
export const APPLIED_HEADER = 'tradeflow-applied';

const asBuffer = (v: string | Buffer | null): Buffer | null => (v === null || Buffer.isBuffer(v) ? v : Buffer.from(v));

/**
 * An own output applied where it is produced: encoded once, so the record sent and the one the
 * handler sees (as if consumed; offset unknown yet: -1) share their bytes.
 */
function appliedOutput(output: ProducedRecord, partition: number, appliedBy: Buffer): { sent: ProducedRecord; seen: ConsumedRecord } {
  const key = asBuffer(output.key);
  const value = asBuffer(output.value);
  const headers: IHeaders = { [APPLIED_HEADER]: appliedBy };
  for (const [k, v] of Object.entries(output.headers ?? {})) if (k !== APPLIED_HEADER) headers[k] = asBuffer(v)!;
  return {
    sent: { topic: output.topic, key, value, partition, headers: headers as Record<string, Buffer> },
    seen: { topic: output.topic, partition, offset: '-1', key, value, headers, timestamp: String(Date.now()) },
  };
}

const partitioners = new Map<number, (record: ProducedRecord) => number>();

/** Which partition of a topic with `count` partitions the default partitioner gives a record. */
export function partitionFor(record: ProducedRecord, count: number): number {
  if (record.partition !== undefined) return record.partition;
  let partitioner = partitioners.get(count);
  if (partitioner === undefined) {
    const partitionMetadata = Array.from({ length: count }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
    const partition = defaultPartitioner();
    partitioner = (r) => partition({ topic: r.topic, partitionMetadata, message: { key: r.key, value: r.value } });
    partitioners.set(count, partitioner);
  }
  return partitioner(record);
}

/** The partition count the topics share; a ConfigError (not retried) when they differ. */
async function equalPartitionCounts(kafka: Kafka, topics: readonly string[], groupId: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [...topics] });
    const counts = metadata.topics.map((t) => t.partitions.length);
    if (new Set(counts).size !== 1) {
      const found = metadata.topics.map((t) => `${t.name}=${t.partitions.length}`).join(', ');
      throw new ConfigError(`${groupId}: the inputs of a stage that applies its own outputs need equal partition counts, found ${found}`);
    }
    return counts[0]!;
  } finally {
    await admin.disconnect();
  }
}

/** Kafka → Kafka with state, exactly once (see the file comment). */
export async function runStateful<S>(options: StatefulOptions<S>): Promise<RunningConsumer> {
  const { kafka, logger, groupId } = options;
  const slots = options.slots ?? 1;
  const ownTopic = options.applyOwnOutputs;
  if (ownTopic !== undefined && !options.topics.includes(ownTopic)) throw new Error(`applyOwnOutputs: ${ownTopic} is not one of the inputs (${options.topics.join(', ')})`);
  /** With applyOwnOutputs every input has ownTopic's partition count (the tasks span all inputs): read once. */
  let ownCount = 0;
  const appliedBy = Buffer.from(groupId);
  /** Compared as bytes: no string per record read back. */
  const appliedHere = (record: ConsumedRecord) => {
    if (record.topic !== ownTopic) return false;
    const mark = record.headers[APPLIED_HEADER];
    return Buffer.isBuffer(mark) ? mark.equals(appliedBy) : mark !== undefined && String(mark) === groupId;
  };
  /** The state of each task (input partition) of a slot, rebuilt from its changelog partition on first use. */
  type StatefulOwner = SlotOwner & { readonly states: Map<number, S> };

  const checkpoint = options.handler.checkpoint?.bind(options.handler);
  const committedOf = (owner: StatefulOwner, partition: number): TaskOffsets =>
    new Map(options.topics.map((topic) => [topic, owner.committed.get(tpKey({ topic, partition })) ?? 0n]));

  /**
   * Opens the state of these tasks from a durable store when it is current, else rebuilds it from
   * their changelog partitions (the slot is fenced, so they are final), a fetch at a time.
   */
  const restore = async (owner: StatefulOwner, partitions: readonly number[]): Promise<void> => {
    const started = Date.now();
    const toRead: number[] = [];
    for (const partition of partitions) {
      const opened = options.handler.open?.(partition, committedOf(owner, partition));
      if (opened === undefined) {
        toRead.push(partition);
        continue;
      }
      owner.states.set(partition, opened);
      options.onRestored?.(partition, opened, 0, Date.now() - started);
      logger.info({ partition, ms: Date.now() - started }, 'task state opened from the local store (as of the committed offsets)');
    }
    if (toRead.length === 0) return;
    const restorers = new Map(toRead.map((partition) => [partition, { restorer: options.handler.restore(partition), entries: 0 }]));
    await eachToEnd(kafka, options.changelogTopic, toRead, groupId, async (partition, entries) => {
      const task = restorers.get(partition)!;
      task.entries += entries.length;
      await task.restorer.add(entries);
    });
    for (const [partition, { restorer, entries }] of restorers) {
      const state = restorer.end();
      options.handler.checkpoint?.(state, committedOf(owner, partition));
      owner.states.set(partition, state);
      options.onRestored?.(partition, state, entries, Date.now() - started);
      logger.info({ partition, changelogEntries: entries, ms: Date.now() - started }, 'task state restored');
    }
  };

  if (ownTopic !== undefined && options.handler.open !== undefined) {
    throw new ConfigError(`${groupId}: a stage that applies its own outputs keeps its state in memory (its handler cannot have open)`);
  }
  if (ownTopic !== undefined) {
    ownCount = await untilSuccess('reading the partition counts of the inputs', logger, () => equalPartitionCounts(kafka, options.topics, groupId), options.retryMaxMs);
  }

  return runSlots<StatefulOwner>(
    options,
    (owner) => ({ ...owner, states: new Map<number, S>() }),
    async (owner, work) => {
      const slot = slotOf(work[0]!.run.source.partition, slots);
      // Applying own outputs can reach any task of the slot, so all of them are restored then.
      const needed = ownTopic === undefined ? work.map((w) => w.run.source.partition) : Array.from({ length: ownCount }, (_, p) => p).filter((p) => slotOf(p, slots) === slot);
      const missing = [...new Set(needed)].filter((p) => !owner.states.has(p));
      if (missing.length > 0) await restore(owner, missing);
      const outputs: ProducedRecord[] = [];
      // Per task, later changes of a key replace earlier ones within the transaction.
      const changelogs = new Map<number, Map<string, Buffer | null>>();
      const apply = (records: readonly ConsumedRecord[], source: TopicPartition): void => {
        const update = options.handler.process(owner.states.get(source.partition)!, records, source);
        let changelog = changelogs.get(source.partition);
        if (changelog === undefined) changelogs.set(source.partition, (changelog = new Map()));
        for (const entry of update.changelog) {
          changelog.delete(entry.key);
          changelog.set(entry.key, entry.value);
        }
        // Own outputs that stay in the slot: applied after this batch, one batch per task, in order.
        let local: Map<number, ConsumedRecord[]> | undefined;
        for (const output of update.outputs) {
          const partition = output.topic === ownTopic ? partitionFor(output, ownCount) : -1;
          if (partition < 0 || slotOf(partition, slots) !== slot) {
            outputs.push(output);
            continue;
          }
          const { sent, seen } = appliedOutput(output, partition, appliedBy);
          outputs.push(sent);
          local ??= new Map();
          const batch = local.get(partition);
          if (batch === undefined) local.set(partition, [seen]);
          else batch.push(seen);
        }
        if (local !== undefined) for (const [partition, batch] of local) apply(batch, { topic: ownTopic!, partition });
      };
      for (const { run, fresh } of work) {
        const records = ownTopic === undefined || run.source.topic !== ownTopic ? fresh : fresh.filter((r) => !appliedHere(r));
        if (records.length > 0) apply(records, run.source);
      }
      const changes: ProducedRecord[] = [...changelogs].flatMap(([partition, changelog]) =>
        [...changelog].map(([key, value]) => ({ topic: options.changelogTopic, partition, key, value })),
      );
      return { outputs, records: [...outputs, ...changes] };
    },
    checkpoint === undefined
      ? undefined
      : (owner, work) => {
          for (const partition of new Set(work.map((w) => w.run.source.partition))) checkpoint(owner.states.get(partition)!, committedOf(owner, partition));
        },
  );
}
