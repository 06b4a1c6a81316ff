/**
 * Materialized views of topics kept in a local store that checkpoints its own offsets (Kafka
 * Streams' state stores with their changelog offsets): nothing is committed to Kafka; where to read
 * from comes from the store.
 * - runView: co-partitioned topics shared out by a consumer group (partition p of each topic to one
 *   member, like a task), each member announcing an address so any member can tell which one holds
 *   a partition (interactive queries).
 * - runBroadcast: every partition of some topics in every process (e.g. the latest prices).
 * On each assignment a partition starts where the store says, from the beginning (a compacted topic
 * rebuilt), or a number of records before the end. Batches are applied in order per partition;
 * the store's transaction carries the offsets after them.
 * The records are fetched by the lean reader (wire/follower.ts) following the assignment, while the
 * Kafka client's consumer keeps the group membership with every partition paused
 * (KAFKA_VIEW_READER=wire, the default), or by that consumer itself.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, Kafka } from './kafka.ts';
import { groupMembers, slotAssigner, viewReader, type GroupMember } from './kafka.ts';
import type { Logger } from './logger.ts';
import type { ServiceMetrics } from './metrics.ts';
import { RetryLog, untilSuccess } from './retry.ts';
import type { ConsumedRecord, TopicPartition } from './runner/index.ts';
import { GROUP_HEARTBEAT_MS } from './runner/lanes.ts';
import { CommittedFollower, type FollowedBatch } from './wire/follower.ts';

/** Where to start reading a partition: the offset a store checkpointed, its beginning, or the last N records. */
export type StartAt = bigint | 'beginning' | { readonly last: number };

/** What a view gets of a record. */
export type ViewRecord = Pick<ConsumedRecord, 'offset' | 'key' | 'value'>;

export interface ViewBatch {
  readonly source: TopicPartition;
  readonly records: readonly ViewRecord[];
  /** The offset after the batch: what the store checkpoints. */
  readonly next: bigint;
  readonly highWatermark: bigint;
}

export interface ViewOptions {
  readonly kafka: Kafka;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  readonly topics: readonly string[];
  readonly startAt: (source: TopicPartition) => StartAt;
  /** Applies a batch (and checkpoints the offset after it); retried while it fails. */
  readonly apply: (batch: ViewBatch) => Promise<void>;
  readonly retryMaxMs?: number;
  readonly fetchMaxWaitMs?: number;
  /**
   * With the lean reader: applies every partition's batch of a fetch at once (one store
   * transaction for the fetch, not one per partition), instead of `apply`; retried while it fails.
   */
  readonly applyFetch?: (batches: readonly ViewBatch[]) => Promise<void>;
}

export interface GroupViewOptions extends ViewOptions {
  readonly groupId: string;
  /** Partitions per topic (the topics' common count): partition p of every topic goes to one member. */
  readonly partitions: number;
  /** This member's address, announced to the group. */
  readonly endpoint: string;
  /** After each assignment: this member's partitions. */
  readonly onAssignment?: (partitions: readonly number[]) => void;
}

export interface RunningView {
  /** The address of the member that holds each partition, as of the last assignment. */
  owners(): ReadonlyMap<number, string>;
  /** Reads the group's members and assignment again (after a miss). */
  refreshOwners(): Promise<void>;
  /** How far behind each partition's end this member is (records). */
  lag(topic: string, partition: number): bigint | undefined;
  stop(): Promise<void>;
}

const key = (tp: TopicPartition) => `${tp.topic}:${tp.partition}`;

async function resolveStart(kafka: Kafka, topic: string, partitions: readonly number[], startAt: ViewOptions['startAt']): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, { low: BigInt(o.low), high: BigInt(o.high) }]));
    const starts = new Map<number, bigint>();
    for (const partition of partitions) {
      const { low, high } = offsets.get(partition) ?? { low: 0n, high: 0n };
      const at = startAt({ topic, partition });
      const wanted = at === 'beginning' ? low : typeof at === 'bigint' ? at : high - BigInt(at.last);
      starts.set(partition, wanted < low ? low : wanted > high ? high : wanted);
    }
    return starts;
  } finally {
    await admin.disconnect();
  }
}

/** The consume loop both views share: reads each assigned partition from where the view starts it. */
async function startView(options: ViewOptions, consumer: Consumer, onJoin: (assigned: TopicPartition[]) => void): Promise<Omit<RunningView, 'owners' | 'refreshOwners'>> {
  const { kafka, logger, metrics } = options;
  /** Per partition: the next offset to apply, once its start is known. */
  const expected = new Map<string, Promise<bigint>>();
  const lags = new Map<string, bigint>();
  let stopping = false;
  const applyLog = new RetryLog(logger, 'applying a batch to the store');
  const lean = viewReader(kafka);
  const fetchLog = new RetryLog(logger, 'fetching');
  const follower =
    lean === undefined
      ? undefined
      : new CommittedFollower(
          {
            ...lean,
            maxWaitMs: options.fetchMaxWaitMs ?? 200,
            partitionMaxBytes: 4 * 1024 * 1024,
            // A fetch applied at once (applyFetch) holds all of its records' objects: as much as
            // one partition's, not four times that (a 1 M accounts rebuild: 98 MB of heap in use at 16 MiB).
            maxBytes: (options.applyFetch === undefined ? 16 : 4) * 1024 * 1024,
            onRetry: (reason) => fetchLog.failure(new Error(reason), 1_000),
            makeRecord: (_topic, _partition, offset, key, value): ViewRecord => ({ offset: String(offset), key, value }),
            deliverFetch: options.applyFetch === undefined ? undefined : (batches: FollowedBatch<ViewRecord>[]) => receivedFetch(options.applyFetch!, batches),
          },
          (batch: FollowedBatch<ViewRecord>) => {
            fetchLog.recovered();
            return received({ topic: batch.topic, partition: batch.partition }, batch.records, BigInt(batch.next), BigInt(batch.highWatermark), async () => undefined, () => false);
          },
        );
  /** Bumped by every assignment: a later one's starts win. */
  let joins = 0;

  /** What of a fetched batch is still to be applied (after the partition's next offset), or undefined: nothing, not assigned. */
  async function unapplied(source: TopicPartition, fetched: readonly ViewRecord[], next: bigint): Promise<readonly ViewRecord[] | undefined> {
    const pending = expected.get(key(source));
    if (pending === undefined) return undefined;
    const from = await pending;
    if (next <= from) return undefined;
    return fetched.length > 0 && BigInt(fetched[0]!.offset) >= from ? fetched : fetched.filter((r) => BigInt(r.offset) >= from);
  }

  /** The partition has been applied up to `next`. */
  function appliedTo(source: TopicPartition, next: bigint, highWatermark: bigint): void {
    if (expected.has(key(source))) expected.set(key(source), Promise.resolve(next));
    const lag = highWatermark > next ? highWatermark - next : 0n;
    lags.set(key(source), lag);
    metrics.setLag(source.topic, source.partition, Number(lag));
  }

  /** Runs `apply` until it succeeds, a second between attempts (heartbeating, when given); false when stopped first. */
  async function untilApplied(apply: () => Promise<void>, context: Record<string, unknown>, heartbeat?: () => Promise<void>): Promise<boolean> {
    for (;;) {
      if (stopping) return false;
      try {
        await apply();
        applyLog.recovered();
        return true;
      } catch (error) {
        applyLog.failure(error, 1_000, context);
        await sleep(1_000);
        await heartbeat?.().catch(() => undefined);
      }
    }
  }

  /** A fetch's batches applied at once (see ViewOptions.applyFetch), retried while that fails. */
  async function receivedFetch(applyFetch: (batches: readonly ViewBatch[]) => Promise<void>, fetched: readonly FollowedBatch<ViewRecord>[]): Promise<void> {
    fetchLog.recovered();
    const ready: ViewBatch[] = [];
    for (const batch of fetched) {
      const source = { topic: batch.topic, partition: batch.partition };
      const records = await unapplied(source, batch.records, BigInt(batch.next));
      if (records !== undefined) ready.push({ source, records, next: BigInt(batch.next), highWatermark: BigInt(batch.highWatermark) });
    }
    // Batches of only transaction markers or aborted records: nothing to apply, but their partitions moved on.
    const toApply = ready.filter((batch) => batch.records.length > 0);
    if (toApply.length > 0) {
      if (!(await untilApplied(() => applyFetch(toApply), { partitions: toApply.map((batch) => key(batch.source)) }))) return;
      for (const batch of toApply) metrics.consumed += batch.records.length;
      metrics.batches += toApply.length;
    }
    for (const batch of ready) appliedTo(batch.source, batch.next, batch.highWatermark);
  }

  /** Applies a fetched batch in order (what is before the partition's next offset was applied already). */
  async function received(source: TopicPartition, fetched: readonly ViewRecord[], next: bigint, highWatermark: bigint, heartbeat: () => Promise<void>, isStale: () => boolean): Promise<void> {
    const records = await unapplied(source, fetched, next);
    if (records === undefined || isStale()) return;
    // Only transaction markers or aborted records: nothing to apply, but the partition moved on.
    if (records.length > 0) {
      if (!(await untilApplied(() => options.apply({ source, records, next, highWatermark }), { ...source }, heartbeat))) return;
      metrics.consumed += records.length;
      metrics.batches++;
    }
    appliedTo(source, next, highWatermark);
  }

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const join = ++joins;
    // The lean reader fetches; the consumer only keeps this member in the group (it heartbeats while idle).
    if (follower !== undefined) consumer.pause(options.topics.map((topic) => ({ topic })));
    const assigned = Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((partition) => ({ topic, partition })));
    logger.info({ assigned: assigned.map(key) }, 'assigned partitions');
    for (const k of [...expected.keys()]) if (!assigned.some((tp) => key(tp) === k)) expected.delete(k);
    const byTopic = new Map<string, number[]>();
    for (const tp of assigned) byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
    const resolved: Promise<[string, Map<number, bigint>]>[] = [];
    for (const [topic, partitions] of byTopic) {
      const starts = untilSuccess(`finding where to read ${topic}`, logger, () => resolveStart(kafka, topic, partitions, options.startAt), options.retryMaxMs);
      resolved.push(starts.then((s) => [topic, s]));
      for (const partition of partitions) {
        const start = starts.then((s) => s.get(partition)!);
        expected.set(key({ topic, partition }), start);
        void start.then((offset) => {
          if (!stopping && follower === undefined) consumer.seek({ topic, partition, offset: offset.toString() });
          logger.info({ topic, partition, offset: offset.toString() }, 'reading from');
        });
      }
    }
    if (follower !== undefined) {
      void Promise.all(resolved).then((starts) => {
        if (join === joins && !stopping) follower.assign(new Map(starts.map(([topic, s]) => [topic, new Map([...s].map(([p, offset]) => [p, Number(offset)]))])));
      });
    }
    onJoin(assigned);
  });

  logger.info({ topics: options.topics, reader: follower === undefined ? 'kafkajs' : 'wire' }, follower === undefined ? "the Kafka client's consumer fetches the view's records" : "the lean reader fetches the view's records; the Kafka client's consumer keeps the group membership");
  await untilSuccess('joining Kafka', logger, async () => {
    await consumer.connect();
    await consumer.subscribe({ topics: [...options.topics], fromBeginning: true });
  }, options.retryMaxMs);
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: true,
    partitionsConsumedConcurrently: 8,
    eachBatch: async ({ batch, isStale, heartbeat }) => {
      // With the lean reader nothing is fetched here (every partition is paused) but what a fetch
      // sent before the pause brought.
      if (follower !== undefined || batch.isEmpty()) return;
      const records: ViewRecord[] = batch.messages.map((m) => ({ offset: m.offset, key: m.key, value: m.value }));
      await received({ topic: batch.topic, partition: batch.partition }, records, BigInt(batch.lastOffset()) + 1n, BigInt(batch.highWatermark), heartbeat, isStale);
    },
  });
  return {
    lag: (topic, partition) => lags.get(key({ topic, partition })),
    stop: async () => {
      stopping = true;
      await follower?.stop();
      await consumer.disconnect();
    },
  };
}

/** Co-partitioned topics shared out by a group; see the file comment. */
export async function runView(options: GroupViewOptions): Promise<RunningView> {
  const { kafka, logger, groupId } = options;
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: options.fetchMaxWaitMs ?? 200,
    maxBytesPerPartition: 4 * 1024 * 1024,
    sessionTimeout: 30_000,
    heartbeatInterval: GROUP_HEARTBEAT_MS,
    retry: { initialRetryTime: 200, maxRetryTime: options.retryMaxMs ?? 10_000, retries: Number.MAX_SAFE_INTEGER },
    partitionAssigners: [slotAssigner(options.partitions, logger, { endpoint: options.endpoint })],
  });
  let owners = new Map<number, string>();
  const refreshOwners = async () => {
    const members: GroupMember[] = await groupMembers(consumer);
    const next = new Map<number, string>();
    for (const member of members) {
      const endpoint = typeof member.announced['endpoint'] === 'string' ? member.announced['endpoint'] : undefined;
      if (endpoint === undefined) continue;
      for (const partition of member.assignment[options.topics[0]!] ?? []) next.set(partition, endpoint);
    }
    owners = next;
  };
  const view = await startView(options, consumer, (assigned) => {
    options.onAssignment?.([...new Set(assigned.map((tp) => tp.partition))].sort((a, b) => a - b));
    void untilSuccess('reading the group\'s members', logger, refreshOwners, options.retryMaxMs);
  });
  return { ...view, owners: () => owners, refreshOwners };
}

/** Every partition of some topics, in this process alone; see the file comment. */
export async function runBroadcast(options: ViewOptions & { readonly name: string }): Promise<Omit<RunningView, 'owners' | 'refreshOwners'>> {
  // A group of its own (one member), so it is assigned every partition; it commits nothing.
  const consumer = options.kafka.consumer({
    groupId: `${options.name}-${randomUUID()}`,
    maxWaitTimeInMs: options.fetchMaxWaitMs ?? 200,
    retry: { initialRetryTime: 200, maxRetryTime: options.retryMaxMs ?? 10_000, retries: Number.MAX_SAFE_INTEGER },
  });
  return startView(options, consumer, () => undefined);
}
