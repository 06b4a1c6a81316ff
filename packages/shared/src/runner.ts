/**
 * The one consume → handle → produce/write → commit loop that every service uses, so delivery
 * semantics live in this file only.
 *
 * - runTransform: Kafka in, Kafka out, exactly once. Each input partition has its own
 *   transactional producer (transactional id = prefix + topic + partition), so whoever owns a
 *   partition fences any earlier owner (a crashed process or a zombie after a rebalance). The
 *   outputs of a batch and the consumer offsets after it are committed in one transaction. When a
 *   partition's producer is (re)initialised the group's committed offset is read again, and
 *   records below it — already committed by an earlier owner — are skipped.
 * - runSink: Kafka in, an external store out (InfluxDB), at least once with idempotent writes:
 *   offsets are committed only after the store acknowledged the batch.
 *
 * - runStateful: Kafka in, Kafka out, exactly once, with state. A task is partition p of every
 *   input topic (co-partitioned, assigned together); its state is rebuilt from partition p of a
 *   changelog topic, and each batch commits its outputs, its state changes (to the changelog) and
 *   its input offsets in one transaction of the task's own transactional producer.
 *
 * All retry with capped exponential backoff while Kafka or the store is unreachable, and stop
 * cleanly: stop() lets the batch in hand finish (or abandons it uncommitted if it cannot), then
 * leaves the group.
 */
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka, Producer } from 'kafkajs';
import { CoPartitionedAssigner, defaultPartitioner, readPartitionsToEnd, type ChangelogEntry } from './kafka.ts';
import type { Logger } from './logger.ts';
import type { ServiceMetrics } from './metrics.ts';

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
  /** Assign partition p of every input topic to one member (for joins of co-partitioned topics). */
  readonly coPartitioned?: boolean;
}

export interface TransformOptions extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Pure with respect to Kafka: returns the records to produce for these input records. */
  readonly handle: (records: readonly ConsumedRecord[], source: TopicPartition) => readonly ProducedRecord[] | Promise<readonly ProducedRecord[]>;
}

export interface SinkOptions extends RunnerOptions {
  /** Must be idempotent: a batch is written again after a crash between write and commit. */
  readonly write: (records: readonly ConsumedRecord[], source: TopicPartition) => Promise<void>;
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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
    maxInFlightRequests: 1,
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

/** Runs `attempt` until it succeeds, the partition is taken away, or the runner stops. */
async function retrying(
  what: string,
  ctx: BatchContext,
  options: RunnerOptions,
  isStopping: () => boolean,
  attempt: () => Promise<void>,
): Promise<void> {
  const cap = options.retryMaxMs ?? 10_000;
  let backoff = INITIAL_BACKOFF_MS;
  for (let failures = 0; ; failures++) {
    if (isStopping() || ctx.lane.revoked || !ctx.payload.isRunning() || ctx.payload.isStale()) throw new Stopped();
    try {
      await attempt();
      if (failures > 0) {
        options.logger.info({ ...ctx.source, failures }, `${what} succeeded after retrying`);
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
      if (failures >= 3) options.metrics.healthy = false;
      options.logger[failures === 0 ? 'warn' : 'error'](
        { ...ctx.source, err: error, retryInMs: backoff, failures: failures + 1 },
        `${what} failed; retrying (nothing is committed until it succeeds)`,
      );
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
 * A lane is the unit that is processed in order: a topic-partition, or for stateful transforms a
 * task (partition p of every input topic). Fetching does not wait for a lane's transaction: batches
 * queue up in their lane while it is busy and the lane takes everything queued as its next
 * transaction. So one slow partition does not hold up the others, and the batch grows with the
 * load instead of the number of transactions.
 */
interface Lane {
  readonly key: string;
  /** Its partitions were assigned to another member: what it has in hand is given up. */
  revoked: boolean;
  pending: BatchContext[];
  pendingBytes: number;
  running: Promise<void> | undefined;
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
    ...(options.coPartitioned === true ? { partitionAssigners: [CoPartitionedAssigner] } : {}),
  });
  let stopping = false;
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

  const drain = async (lane: Lane) => {
    while (lane.pending.length > 0 && !stopping) {
      const entries = dropPending(lane);
      try {
        await processLane(entries, isStopping);
        for (const run of runsBySource(entries)) {
          metrics.batches++;
          metrics.setLag(run.source.topic, run.source.partition, Math.max(0, Number(BigInt(run.highWatermark) - BigInt(run.nextOffset))));
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
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    logger.error({ err: payload.error, restart: payload.restart }, 'consumer crashed');
  });

  const start = async (): Promise<RunningConsumer> => {
    await consumer.connect();
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
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
        if (lane === undefined) lanes.set(key, (lane = { key, revoked: false, pending: [], pendingBytes: 0, running: undefined, room: newRoom() }));
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

/** Kafka → Kafka, exactly once (see the file comment). */
export async function runTransform(options: TransformOptions): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId } = options;
  const admin: Admin = kafka.admin();
  await admin.connect();

  interface PartitionProducer {
    readonly producer: Producer;
    /** The next offset to process; records below it were committed by an earlier owner. */
    committed: bigint;
  }
  const producers = new Map<string, Promise<PartitionProducer>>();
  const keyOf = (tp: TopicPartition) => `${tp.topic}-${tp.partition}`;

  const committedOffset = async (tp: TopicPartition): Promise<bigint> => {
    const offsets = await admin.fetchOffsets({ groupId, topics: [tp.topic] });
    const found = offsets[0]?.partitions.find((p) => p.partition === tp.partition);
    return found === undefined || BigInt(found.offset) < 0n ? 0n : BigInt(found.offset);
  };

  const openProducer = async (tp: TopicPartition): Promise<PartitionProducer> => {
    const producer = transactionalProducer(kafka, `${options.transactionalIdPrefix}-${tp.topic}-${tp.partition}`);
    try {
      // InitProducerId fences any earlier owner and completes its pending transaction, so the
      // committed offset read after it is final.
      await producer.connect();
      return { producer, committed: await committedOffset(tp) };
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
  };

  const producerFor = (tp: TopicPartition): Promise<PartitionProducer> => openOnce(producers, keyOf(tp), () => openProducer(tp));

  const closeProducer = async (tp: TopicPartition): Promise<void> => {
    const key = keyOf(tp);
    const entry = producers.get(key);
    producers.delete(key);
    metrics.forgetLag(tp.topic, tp.partition);
    if (entry !== undefined) await (await entry.catch(() => undefined))?.producer.disconnect().catch(() => undefined);
  };

  const processLane = async (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const ctx = mergeBatches(entries);
    await retrying('transaction', ctx, options, isStopping, async () => {
      const owner = await producerFor(ctx.source);
      const fresh = ctx.records.filter((r) => BigInt(r.offset) >= owner.committed);
      if (fresh.length === 0) return;
      const outputs = await options.handle(fresh, ctx.source);
      const transaction = await owner.producer.transaction();
      try {
        // Offsets first: from the first record sent until the commit markers are written, the
        // output partitions' last stable offset is held back (for every reader, and behind every
        // other producer's records), so that stretch is kept as short as possible.
        const timer = new StepTimer(metrics);
        await sendOffsets(transaction, {
          consumerGroupId: groupId,
          topics: [{ topic: ctx.source.topic, partitions: [{ partition: ctx.source.partition, offset: ctx.nextOffset }] }],
        });
        timer.step('txn.offsets');
        for (const chunk of produceChunks(outputs)) await transaction.sendBatch({ acks: -1, topicMessages: chunk });
        timer.step('txn.produce');
        await transaction.commit();
        timer.step('txn.commit');
        timer.total('txn');
      } catch (error) {
        await transaction.abort().catch(() => undefined);
        // Start over with a fresh producer: re-initialising it settles the transaction's outcome
        // and re-reads the committed offset, so an ambiguous commit is never produced twice.
        await closeProducer(ctx.source);
        throw error;
      }
      owner.committed = BigInt(ctx.nextOffset);
      countBatch(metrics, fresh.length, outputs);
    });
  };

  const onAssignment = async (assigned: readonly TopicPartition[], lanes: ReadonlyMap<string, Lane>) => {
    const keep = new Set(assigned.map(keyOf));
    const revoked = [...producers.keys()].filter((key) => !keep.has(key));
    await Promise.all(
      revoked.map(async (key) => {
        await lanes.get(key)?.running;
        const cut = key.lastIndexOf('-');
        return closeProducer({ topic: key.slice(0, cut), partition: Number(key.slice(cut + 1)) });
      }),
    );
  };

  const onStop = async () => {
    await Promise.all([...producers.values()].map(async (entry) => (await entry.catch(() => undefined))?.producer.disconnect().catch(() => undefined)));
    producers.clear();
    await admin.disconnect();
  };

  logger.info({ groupId, transactionalIdPrefix: options.transactionalIdPrefix }, 'starting exactly-once transform');
  return startConsumer(options, keyOf, processLane, onAssignment, onStop);
}

/** Kafka → external store, offsets committed after the store acknowledged (see the file comment). */
export async function runSink(options: SinkOptions): Promise<RunningConsumer> {
  const processLane = async (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const ctx = mergeBatches(entries);
    await retrying('write', ctx, options, isStopping, () => options.write(ctx.records, ctx.source));
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
  return startConsumer(options, (tp) => `${tp.topic}-${tp.partition}`, processLane, onAssignment, async () => undefined);
}

export interface StateUpdate {
  readonly outputs: readonly ProducedRecord[];
  /** Changes of the task's state, written to its changelog partition (value null deletes a key). */
  readonly changelog: readonly ChangelogEntry[];
}

export interface StatefulHandler<S> {
  /** Rebuilds a task's state from its changelog (oldest first; later entries of a key win). */
  restore(entries: readonly ChangelogEntry[], partition: number): S;
  /** Applies one batch of one input topic-partition to the state, in place. */
  process(state: S, records: readonly ConsumedRecord[], source: TopicPartition): StateUpdate;
}

export interface StatefulOptions<S> extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Compacted topic with the same partition count as the inputs. */
  readonly changelogTopic: string;
  readonly handler: StatefulHandler<S>;
  /** Called after a task's state was rebuilt (for metrics and logs). */
  readonly onRestored?: (partition: number, state: S, entries: number, ms: number) => void;
}

/** Kafka → Kafka with state, exactly once (see the file comment). */
export async function runStateful<S>(options: StatefulOptions<S>): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId, topics } = options;
  const admin: Admin = kafka.admin();
  await admin.connect();

  interface Task {
    readonly partition: number;
    readonly producer: Producer;
    readonly committed: Map<string, bigint>;
    readonly state: S;
  }
  const tasks = new Map<number, Promise<Task>>();
  const locks = new Map<number, Promise<void>>();

  /** Runs `fn` after every earlier call for the same task: one batch of a task at a time. */
  const withTaskLock = (partition: number, fn: () => Promise<void>): Promise<void> => {
    const previous = locks.get(partition) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    locks.set(partition, settled);
    void settled.then(() => {
      if (locks.get(partition) === settled) locks.delete(partition);
    });
    return next;
  };

  const openTask = async (partition: number): Promise<Task> => {
    const producer = transactionalProducer(kafka, `${options.transactionalIdPrefix}-${partition}`);
    try {
      const started = Date.now();
      logger.debug({ partition }, 'opening task: fencing earlier owners');
      // Fence any earlier owner first: after this, the changelog and the offsets are final.
      await withTimeout('fencing the task\'s transactional id', producer.connect());
      const committed = new Map<string, bigint>();
      logger.debug({ partition }, 'opening task: reading committed offsets');
      for (const { topic, partitions } of await withTimeout('reading committed offsets', admin.fetchOffsets({ groupId, topics: [...topics] }))) {
        const found = partitions.find((p) => p.partition === partition);
        committed.set(topic, found === undefined || BigInt(found.offset) < 0n ? 0n : BigInt(found.offset));
      }
      logger.debug({ partition }, 'opening task: reading the changelog');
      const entries = (await readPartitionsToEnd(kafka, options.changelogTopic, [partition], groupId)).get(partition) ?? [];
      const state = options.handler.restore(entries, partition);
      options.onRestored?.(partition, state, entries.length, Date.now() - started);
      logger.info({ partition, changelogEntries: entries.length, ms: Date.now() - started }, 'task state restored');
      return { partition, producer, committed, state };
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
  };

  const taskFor = (partition: number): Promise<Task> => openOnce(tasks, partition, () => openTask(partition));

  const closeTask = async (partition: number): Promise<void> => {
    const entry = tasks.get(partition);
    tasks.delete(partition);
    for (const topic of topics) metrics.forgetLag(topic, partition);
    if (entry !== undefined) await (await entry.catch(() => undefined))?.producer.disconnect().catch(() => undefined);
  };

  /** One transaction for everything a task has queued, of any of its input topics. */
  const processLane = (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const runs = runsBySource(entries);
    const partition = runs[0]!.source.partition;
    const last = runs[runs.length - 1]!;
    return withTaskLock(partition, () =>
      retrying('transaction', last, options, isStopping, async () => {
        const task = await taskFor(partition);
        const work = runs
          .map((run) => ({ run, fresh: run.records.filter((r) => BigInt(r.offset) >= (task.committed.get(run.source.topic) ?? 0n)) }))
          .filter(({ fresh }) => fresh.length > 0);
        if (work.length === 0) return;
        const timer = new StepTimer(metrics);
        const transaction = await task.producer.transaction();
        const outputs: ProducedRecord[] = [];
        const offsets = new Map<string, string>();
        let consumed = 0;
        try {
          // Later changes of a key replace earlier ones within the transaction.
          const changelog = new Map<string, Buffer | null>();
          for (const { run, fresh } of work) {
            const update = options.handler.process(task.state, fresh, run.source);
            outputs.push(...update.outputs);
            for (const entry of update.changelog) {
              changelog.delete(entry.key);
              changelog.set(entry.key, entry.value);
            }
            offsets.set(run.source.topic, run.nextOffset);
            consumed += fresh.length;
          }
          const changes: ProducedRecord[] = [...changelog].map(([key, value]) => ({ topic: options.changelogTopic, partition, key, value }));
          // Offsets first, for the reason given in runTransform.
          timer.step('txn.process');
          await sendOffsets(transaction, {
            consumerGroupId: groupId,
            topics: [...offsets].map(([topic, offset]) => ({ topic, partitions: [{ partition, offset }] })),
          });
          timer.step('txn.offsets');
          for (const chunk of produceChunks([...outputs, ...changes])) await transaction.sendBatch({ acks: -1, topicMessages: chunk });
          timer.step('txn.produce');
          await transaction.commit();
          timer.step('txn.commit');
          timer.total('txn');
        } catch (error) {
          await transaction.abort().catch(() => undefined);
          // The in-memory state may hold uncommitted changes: rebuild it from the changelog.
          await closeTask(partition);
          throw error;
        }
        for (const [topic, offset] of offsets) task.committed.set(topic, BigInt(offset));
        countBatch(metrics, consumed, outputs);
      }),
    );
  };

  const onAssignment = async (assigned: readonly TopicPartition[]) => {
    const keep = new Set(assigned.map((tp) => tp.partition));
    await Promise.all([...tasks.keys()].filter((p) => !keep.has(p)).map((p) => withTaskLock(p, () => closeTask(p))));
  };

  const onStop = async () => {
    await Promise.all([...tasks.keys()].map((p) => closeTask(p)));
    await admin.disconnect();
  };

  logger.info({ groupId, changelogTopic: options.changelogTopic }, 'starting exactly-once stateful transform');
  return startConsumer({ ...options, coPartitioned: true }, (tp) => String(tp.partition), processLane, onAssignment, onStop);
}
