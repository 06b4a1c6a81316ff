/**
 * The one place that knows the Kafka client library (kafkajs). Services get a client, producers,
 * consumers and topic administration from here (and the runner, in runner/, takes the client's
 * types from here), so a change of client touches this file and the runner only.
 */
import { randomUUID } from 'node:crypto';
import { AssignerProtocol, Kafka, logLevel, Partitioners, type ConfigResourceTypes, type Consumer, type KafkaConfig, type LogEntry, type PartitionAssigner, type SASLOptions } from 'kafkajs';
import { ConfigError, type KafkaEnv } from './config.ts';
import type { Logger } from './logger.ts';
import { coPartitioningProblems, type TopicDefinition } from './topics.ts';
import type { ProducedRecord } from './runner/records.ts';
import { committedReaderOptions, readCommitted, type CommittedReaderOptions } from './wire/committed-reader.ts';
import { saslOf } from './wire/sasl.ts';
import { TransactionalProducer, type GroupOffsets } from './wire/transactional-producer.ts';

/**
 * The lean client's settings for the clients made by createKafka (the same brokers, TLS and SASL),
 * and which of the reading paths use it: changelogs in eachToEnd (KAFKA_RESTORE_READER=wire),
 * materialized views (KAFKA_VIEW_READER=wire, see view.ts), exactly-once stages' inputs
 * (KAFKA_STAGE_READER=wire). Exactly-once stages always produce with the lean transactional producer.
 */
const leanReaders = new WeakMap<
  Kafka,
  { readonly restore: CommittedReaderOptions | undefined; readonly view: CommittedReaderOptions | undefined; readonly stage: CommittedReaderOptions | undefined; readonly producer: CommittedReaderOptions }
>();

/** The lean client's settings for this client (the same brokers, TLS and SASL): what the lean producer and offset reads use. */
export function leanClient(kafka: Kafka): CommittedReaderOptions {
  const lean = leanReaders.get(kafka)?.producer;
  if (lean === undefined) throw new Error('the lean client needs a Kafka client made by createKafka');
  return lean;
}

/** The lean reader's options for a view's fetching with this client, or undefined: the client's consumer fetches. */
export const viewReader = (kafka: Kafka): CommittedReaderOptions | undefined => leanReaders.get(kafka)?.view;

/** The lean reader's options for an exactly-once stage's fetching with this client, or undefined: the client's consumer fetches. */
export const stageReader = (kafka: Kafka): CommittedReaderOptions | undefined => leanReaders.get(kafka)?.stage;

export type { Kafka, Producer, Consumer, Admin, IHeaders, EachBatchPayload, PartitionAssigner } from 'kafkajs';
export { CompressionTypes } from 'kafkajs';

// kafkajs 2.2.4 arms a timer with a negative delay when a connection is not throttled; Node runs it
// after 1 ms as intended, but since Node 24 also prints a TimeoutNegativeWarning. Drop that one warning.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  if (type === 'TimeoutNegativeWarning') return;
  (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

/** Key partitioning compatible with the Java client (murmur2), so every producer agrees on where a symbol lives. */
export const defaultPartitioner = Partitioners.DefaultPartitioner;

/** The Kafka client's SASL settings: the same as the lean client's (wire/sasl.ts). */
function saslOptions(env: KafkaEnv): SASLOptions | undefined {
  const sasl = saslOf(env);
  return sasl === undefined ? undefined : ({ ...sasl } as SASLOptions);
}

const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** kafkajs repeats the same complaint on every retry: a repeat within this long goes to debug. */
const REPEAT_QUIET_MS = 60_000;

export function createKafka(env: KafkaEnv, clientId: string, logger: Logger): Kafka {
  const kafkaLogger = logger.child({ component: 'kafkajs' });
  const lastSaid = new Map<string, number>();
  const config: KafkaConfig = {
    clientId: env.KAFKA_CLIENT_ID ?? clientId,
    brokers: env.KAFKA_BROKERS,
    ssl: env.KAFKA_SSL,
    connectionTimeout: 5_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 200, maxRetryTime: 5_000, retries: 8 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ namespace, level, log }: LogEntry) => {
        const { message, ...extra } = log;
        // The runner retries a failed transaction whole, after fencing, so limited producer
        // retries cannot break exactly-once here.
        if (message === 'Limiting retries for the idempotent producer may invalidate EoS guarantees') return;
        // Error responses are retried by kafkajs or reported by the runner with context; logging
        // each one at error level would cry wolf (e.g. CONCURRENT_TRANSACTIONS right after a commit,
        // which kafkajs retries). A consumer's crash and restart are logged by the runner.
        const expected =
          (namespace === 'Connection' && message.startsWith('Response ')) ||
          message.includes('concurrent operation on the same transaction') ||
          message.startsWith('Crash: ') ||
          message.startsWith('Restarting the consumer');
        let name = expected ? 'debug' : (levelNames[level] ?? 'info');
        // kafkajs retries these itself (a new topic's leaders are being elected, say).
        if (name === 'error' && message.startsWith('Failed to send messages')) name = 'warn';
        if (name === 'error' || name === 'warn') {
          const key = `${namespace}:${message.replace(/\d+/g, '#')}`;
          const now = Date.now();
          if (now - (lastSaid.get(key) ?? -Infinity) < REPEAT_QUIET_MS) name = 'debug';
          else lastSaid.set(key, now);
        }
        kafkaLogger[name]({ namespace, ...extra }, message);
      },
  };
  const sasl = saslOptions(env);
  if (sasl !== undefined) config.sasl = sasl;
  const kafka = new Kafka(config);
  const lean = committedReaderOptions(env, config.clientId!);
  leanReaders.set(kafka, {
    restore: env.KAFKA_RESTORE_READER === 'kafkajs' ? undefined : lean,
    view: env.KAFKA_VIEW_READER === 'kafkajs' ? undefined : lean,
    stage: env.KAFKA_STAGE_READER === 'kafkajs' ? undefined : lean,
    producer: lean,
  });
  return kafka;
}

export type { GroupOffsets } from './wire/transactional-producer.ts';

/** What an exactly-once stage needs of a transactional producer (the lean one: wire/transactional-producer.ts). */
export interface StageProducer {
  readonly transactionalId: string;
  /** Fences every earlier producer with this transactional id and settles its open transaction. */
  connect(): Promise<void>;
  transaction(): Promise<StageTransaction>;
  disconnect(): Promise<void>;
}

export interface StageTransaction {
  /** Resolves once every record is acknowledged (partitioned by its own partition, else by its key). */
  send(records: readonly ProducedRecord[]): Promise<void>;
  /** Commits a group's offsets with the transaction; with a member, only if the group still has it in that generation (KIP-447). */
  sendOffsets(offsets: GroupOffsets): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** A request a stage's producer sent: its API's name and its correlation id on its connection. */
export interface ObservedRequest {
  readonly apiName: string;
  readonly correlationId: number;
}

const stageObservers = new WeakMap<Kafka, (request: ObservedRequest) => void>();

/** From now on every request of the stage producers made with this client is told to `listener` (diagnostics and tests). */
export function observeStageRequests(kafka: Kafka, listener: (request: ObservedRequest) => void): void {
  stageObservers.set(kafka, listener);
}

/** A transactional producer for an exactly-once stage, with this id (see StageProducer). */
export function stageProducer(kafka: Kafka, transactionalId: string, transactionTimeoutMs: number): StageProducer {
  const lean = leanClient(kafka);
  const producer = new TransactionalProducer({ brokers: lean.brokers, clientId: lean.clientId, ssl: lean.ssl, sasl: lean.sasl, transactionalId, transactionTimeoutMs, onRequest: stageObservers.get(kafka) });
  return {
    transactionalId,
    connect: () => producer.init(),
    transaction: async () => producer.begin(),
    disconnect: async () => producer.close(),
  };
}

/**
 * Creates the missing topics from their definitions and refuses, loudly, a cluster where
 * co-partitioned topics disagree on their partition count. Idempotent; safe to run from several
 * processes at once.
 */
export async function ensureTopics(kafka: Kafka, definitions: readonly TopicDefinition[], logger: Logger): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = definitions.filter((def) => !existing.has(def.name));
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((def) => ({
          topic: def.name,
          numPartitions: def.partitions,
          replicationFactor: -1,
          configEntries: [{ name: 'cleanup.policy', value: def.cleanupPolicy }],
        })),
      });
      logger.info({ topics: missing.map((def) => def.name) }, 'created topics');
    }
    const metadata = await admin.fetchTopicMetadata({ topics: definitions.map((def) => def.name) });
    const actual = new Map(metadata.topics.map((t) => [t.name, t.partitions.length]));
    const problems = coPartitioningProblems(definitions, actual);
    if (problems.length > 0) throw new ConfigError(problems.join('\n'));
    for (const def of definitions) {
      const count = actual.get(def.name);
      if (count !== def.partitions) {
        logger.warn({ topic: def.name, partitions: count, configured: def.partitions }, 'topic exists with a different partition count than configured');
      }
    }
  } finally {
    await admin.disconnect();
  }
}

/** What a store kept on disk is checked against: which cluster, and how far each partition goes. */
export interface ClusterState {
  /** Kafka's cluster id: a new one for every freshly formatted cluster. */
  readonly clusterId: string;
  /** The end offset (high watermark) of each partition, by `topic:partition`. */
  readonly ends: ReadonlyMap<string, bigint>;
}

export async function clusterState(kafka: Kafka, topics: readonly string[]): Promise<ClusterState> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { clusterId } = await admin.describeCluster();
    const ends = new Map<string, bigint>();
    for (const topic of topics) for (const { partition, high } of await admin.fetchTopicOffsets(topic)) ends.set(`${topic}:${partition}`, BigInt(high));
    return { clusterId, ends };
  } finally {
    await admin.disconnect();
  }
}

/**
 * Why a store as of `offsets` (and kept for cluster `clusterId`) cannot be of these topics, or
 * undefined when it can: it was kept for another cluster (the broker's data was removed, as a
 * local broker's is at every start), or it is as of an offset past a partition's end (the topic was
 * deleted and created again).
 */
export function storeMismatch(stored: { readonly clusterId: string | undefined; readonly offsets: Iterable<readonly [topic: string, partition: number, next: bigint]> }, now: ClusterState): string | undefined {
  if (stored.clusterId !== undefined && stored.clusterId !== now.clusterId) return `it was kept for Kafka cluster ${stored.clusterId}, and this is cluster ${now.clusterId}`;
  for (const [topic, partition, next] of stored.offsets) {
    const end = now.ends.get(`${topic}:${partition}`);
    if (end !== undefined && next > end) return `it is as of offset ${next} of ${topic}-${partition}, past that partition's end (${end}): the topic was created again`;
  }
  return undefined;
}

/** The slot of a partition: partition p of every input topic belongs to slot p mod slots. */
export const slotOf = (partition: number, slots: number): number => partition % slots;

/** Decodes the slot count a member announced in its subscription (undefined if it announced none). */
function announcedSlots(memberMetadata: Buffer): number | undefined {
  try {
    const { userData } = AssignerProtocol.MemberMetadata.decode(memberMetadata) ?? {};
    const parsed = userData === undefined || userData.length === 0 ? undefined : (JSON.parse(userData.toString()) as { slots?: unknown });
    return typeof parsed?.slots === 'number' ? parsed.slots : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Assigns whole slots: every partition p of every subscribed topic with p mod slots = s goes to the
 * member that owns slot s, and slots are dealt round robin over the members sorted by id. So
 * co-partitioned topics are joined in one member (partition p of each lands together, like Kafka
 * Streams' tasks), and each slot's work is committed by one transactional producer whose id names
 * the slot: a new owner of the slot fences the old one. Members must agree on the slot count; the
 * leader gives nothing to a member that announced another one (and says so in the log). Slots 0
 * makes every partition number its own slot (one producer per instance). `announce`
 * goes into this member's metadata too, for the other members to read (see groupMembers).
 */
export function slotAssigner(slots: number, logger: Logger, announce: Record<string, unknown> = {}): PartitionAssigner {
  const name = 'TradeflowSlotAssigner';
  return ({ cluster }) => ({
    name,
    version: 0,
    async assign({ members, topics }) {
      const agreeing: string[] = [];
      for (const { memberId, memberMetadata } of members) {
        const theirs = announcedSlots(memberMetadata);
        if (theirs === slots) agreeing.push(memberId);
        else logger.error({ memberId, theirSlots: theirs, slots }, 'a member of the group uses another TRANSACTION_SLOTS or TRANSACTIONAL_PRODUCER (slots 0: one producer per instance): it gets no partitions until all members agree');
      }
      agreeing.sort();
      const assignment = new Map<string, Record<string, number[]>>(members.map(({ memberId }) => [memberId, {}]));
      if (agreeing.length > 0) {
        for (const topic of topics) {
          const partitions = cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId).sort((a, b) => a - b);
          for (const partition of partitions) {
            const memberId = agreeing[(slots === 0 ? partition : slotOf(partition, slots)) % agreeing.length]!;
            (assignment.get(memberId)![topic] ??= []).push(partition);
          }
        }
      }
      return [...assignment].map(([memberId, byTopic]) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: byTopic, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }) {
      return { name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.from(JSON.stringify({ ...announce, slots })) }) };
    },
  });
}

/** An assigner for a group of one reader: its first member gets exactly these partitions of `topic`. */
export function fixedAssigner(topic: string, partitions: readonly number[]): PartitionAssigner {
  const name = 'TradeflowFixedAssigner';
  return () => ({
    name,
    version: 0,
    async assign({ members }) {
      return members.map(({ memberId }, i) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: i === 0 ? { [topic]: [...partitions] } : {}, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }) {
      return { name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
    },
  });
}

export interface ChangelogEntry {
  readonly key: string;
  readonly value: Buffer | null;
}

/**
 * Reads the committed records of some partitions of a topic from their beginning to their end
 * (the end as it is when called), oldest first. Used to rebuild a task's state from its changelog
 * after the task's transactional producer fenced any earlier owner, so nothing is in flight there.
 */
export async function readPartitionsToEnd(
  kafka: Kafka,
  topic: string,
  partitions: readonly number[],
  groupPrefix: string,
  timeoutMs = 120_000,
): Promise<Map<number, ChangelogEntry[]>> {
  const result = new Map<number, ChangelogEntry[]>(partitions.map((p) => [p, []]));
  await eachToEnd(
    kafka,
    topic,
    partitions,
    groupPrefix,
    (partition, entries) => {
      // One by one: a fetch can hold more entries than a spread call takes arguments.
      const all = result.get(partition)!;
      for (const entry of entries) all.push(entry);
    },
    timeoutMs,
  );
  return result;
}

/**
 * readPartitionsToEnd a batch at a time: `each` gets every fetched batch of a partition in order
 * and is awaited before the next fetch, so memory holds one fetch, not the topic. `timeoutMs`
 * bounds the time without progress, not the whole read (a changelog of millions takes minutes).
 */
export async function eachToEnd(
  kafka: Kafka,
  topic: string,
  partitions: readonly number[],
  groupPrefix: string,
  each: (partition: number, entries: readonly ChangelogEntry[]) => void | Promise<void>,
  timeoutMs = 120_000,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  let ends: Map<number, bigint>;
  let starts: Map<number, bigint>;
  try {
    const offsets = (await admin.fetchTopicOffsets(topic)).filter((o) => partitions.includes(o.partition) && BigInt(o.high) > BigInt(o.low));
    ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
    starts = new Map(offsets.map((o) => [o.partition, BigInt(o.low)]));
  } finally {
    await admin.disconnect();
  }
  if (ends.size === 0) return;

  const lean = leanReaders.get(kafka)?.restore;
  if (lean !== undefined) {
    // Each fetch's entries go to `each` once it is decoded, one call at a time (a reader per leader).
    const fetched = new Map<number, ChangelogEntry[]>();
    let serial = Promise.resolve();
    const handOver = async () => {
      for (const [partition, entries] of fetched) {
        fetched.delete(partition);
        await each(partition, entries);
      }
    };
    await readCommitted(
      // As below: a fetch's entries are all on the heap at once.
      { ...lean, partitionMaxBytes: 2 * 1024 * 1024, maxBytes: 4 * 1024 * 1024, noProgressTimeoutMs: timeoutMs, afterFetch: () => (serial = serial.then(handOver)) },
      topic,
      [...ends].map(([partition, end]) => ({ partition, start: Number(starts.get(partition) ?? 0n), end: Number(end) })),
      (partition, _offset, data, keyStart, keyLength, valueStart, valueLength) => {
        let entries = fetched.get(partition);
        if (entries === undefined) fetched.set(partition, (entries = []));
        entries.push({ key: keyLength < 0 ? '' : data.toString('utf8', keyStart, keyStart + keyLength), value: valueLength < 0 ? null : data.subarray(valueStart, valueStart + valueLength) });
      },
    );
    await (serial = serial.then(handOver));
    return;
  }

  const consumer = kafka.consumer({
    groupId: `${groupPrefix}-restore-${randomUUID()}`,
    readUncommitted: false,
    // One fetch's records are decoded at once, each an object of a few hundred bytes: a 32 MiB
    // fetch of positions (about 300,000) outgrew fill-publisher's heap bound (node-options.ts).
    maxBytesPerPartition: 2 * 1024 * 1024,
    maxBytes: 4 * 1024 * 1024,
    maxWaitTimeInMs: 100,
  });
  const pending = new Set(ends.keys());
  let finish!: () => void;
  let fail!: (error: unknown) => void;
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  let progressAt = Date.now();
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.topic !== topic || !pending.has(payload.partition)) return;
    if (BigInt(payload.lastOffset) + 1n >= ends.get(payload.partition)!) {
      pending.delete(payload.partition);
      if (pending.size === 0) finish();
    }
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: async ({ batch }) => {
        progressAt = Date.now();
        if (!pending.has(batch.partition) || !ends.has(batch.partition)) return;
        const entries: ChangelogEntry[] = new Array(batch.messages.length);
        for (let i = 0; i < batch.messages.length; i++) {
          const m = batch.messages[i]!;
          entries[i] = { key: m.key?.toString() ?? '', value: m.value };
        }
        try {
          await each(batch.partition, entries);
        } catch (error) {
          fail(error);
          throw error;
        }
        progressAt = Date.now();
      },
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise<never>((_, reject) => {
        timer = setInterval(() => {
          if (Date.now() - progressAt > timeoutMs) reject(new Error(`reading ${topic} partitions ${[...pending].join(',')} to their end: no progress for ${timeoutMs / 1000} s`));
        }, Math.min(1_000, timeoutMs));
      }),
    ]).finally(() => clearInterval(timer));
  } finally {
    await consumer.disconnect();
  }
}

export interface TopicOverview {
  readonly name: string;
  /** Per partition, in partition order: the first and the next offset (the end). */
  readonly partitions: readonly { readonly partition: number; readonly low: bigint; readonly high: bigint }[];
  readonly cleanupPolicy: string;
}

export interface GroupOverview {
  readonly groupId: string;
  readonly state: string;
  readonly members: number;
  /** Per topic it has offsets on: committed offset and lag per partition (lag = end − committed). */
  readonly topics: readonly { readonly topic: string; readonly partitions: readonly { readonly partition: number; readonly committed: bigint | undefined; readonly lag: bigint }[] }[];
}

/** ConfigResourceTypes.TOPIC: the enum is not among kafkajs's named exports under ESM. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

/** Topics (internal ones left out), their partitions' offsets and cleanup policy, sorted by name. */
export async function describeTopics(kafka: Kafka): Promise<TopicOverview[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names = (await admin.listTopics()).filter((name) => !name.startsWith('__')).sort();
    if (names.length === 0) return [];
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: names.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: ['cleanup.policy'] })),
    });
    const policy = new Map(configs.resources.map((r) => [r.resourceName, r.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? '?']));
    return await Promise.all(
      names.map(async (name) => ({
        name,
        partitions: (await admin.fetchTopicOffsets(name)).map((p) => ({ partition: p.partition, low: BigInt(p.low), high: BigInt(p.high) })).sort((a, b) => a.partition - b.partition),
        cleanupPolicy: policy.get(name) ?? '?',
      })),
    );
  } finally {
    await admin.disconnect();
  }
}

/** Consumer groups with their state, members and lag on each topic they committed offsets on. */
export async function describeGroups(kafka: Kafka): Promise<GroupOverview[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ids = (await admin.listGroups()).groups.map((g) => g.groupId).sort();
    if (ids.length === 0) return [];
    const described = new Map((await admin.describeGroups(ids)).groups.map((g) => [g.groupId, g]));
    const ends = new Map<string, Map<number, bigint>>();
    const endOf = async (topic: string) => {
      let found = ends.get(topic);
      if (found === undefined) ends.set(topic, (found = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]))));
      return found;
    };
    const groups: GroupOverview[] = [];
    for (const groupId of ids) {
      const offsets = await admin.fetchOffsets({ groupId });
      const topics = [];
      for (const { topic, partitions } of offsets) {
        if (partitions.every((p) => p.offset === '-1')) continue;
        const end = await endOf(topic);
        topics.push({
          topic,
          partitions: partitions
            .map((p) => {
              const committed = p.offset === '-1' ? undefined : BigInt(p.offset);
              const high = end.get(p.partition) ?? 0n;
              return { partition: p.partition, committed, lag: committed === undefined ? high : high > committed ? high - committed : 0n };
            })
            .sort((a, b) => a.partition - b.partition),
        });
      }
      const group = described.get(groupId);
      groups.push({ groupId, state: group?.state ?? '?', members: group?.members.length ?? 0, topics: topics.sort((a, b) => a.topic.localeCompare(b.topic)) });
    }
    return groups;
  } finally {
    await admin.disconnect();
  }
}

export interface GroupMember {
  readonly memberId: string;
  /** What the member announced in its metadata (see slotAssigner's `announce`). */
  readonly announced: Record<string, unknown>;
  /** Its partitions per topic. */
  readonly assignment: Record<string, number[]>;
}

/** The members of a consumer's group with what they announced and what they were assigned. */
export async function groupMembers(consumer: Consumer): Promise<GroupMember[]> {
  const { members } = await consumer.describeGroup();
  return members.map(({ memberId, memberMetadata, memberAssignment }) => {
    let announced: Record<string, unknown> = {};
    try {
      const userData = AssignerProtocol.MemberMetadata.decode(memberMetadata)?.userData;
      if (userData !== undefined && userData.length > 0) announced = JSON.parse(userData.toString()) as Record<string, unknown>;
    } catch {
      announced = {};
    }
    const assignment = memberAssignment.length === 0 ? {} : (AssignerProtocol.MemberAssignment.decode(memberAssignment)?.assignment ?? {});
    return { memberId, announced, assignment };
  });
}
