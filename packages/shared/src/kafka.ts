/**
 * The one place that knows the Kafka client library (kafkajs). Services get a client, producers,
 * consumers and topic administration from here, so a change of client touches this file and
 * runner.ts only.
 */
import { randomUUID } from 'node:crypto';
import { AssignerProtocol, Kafka, logLevel, Partitioners, type KafkaConfig, type LogEntry, type PartitionAssigner, type SASLOptions } from 'kafkajs';
import { ConfigError, type KafkaEnv } from './config.ts';
import type { Logger } from './logger.ts';
import { coPartitioningProblems, type TopicDefinition } from './topics.ts';

export type { Kafka, Producer, Consumer, Admin, IHeaders } from 'kafkajs';
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

function saslOptions(env: KafkaEnv): SASLOptions | undefined {
  if (env.KAFKA_SASL_MECHANISM === undefined) return undefined;
  if (env.KAFKA_SASL_USERNAME === undefined || env.KAFKA_SASL_PASSWORD === undefined) {
    throw new ConfigError(
      `KAFKA_SASL_MECHANISM=${env.KAFKA_SASL_MECHANISM} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD to be set`,
    );
  }
  return { mechanism: env.KAFKA_SASL_MECHANISM, username: env.KAFKA_SASL_USERNAME, password: env.KAFKA_SASL_PASSWORD } as SASLOptions;
}

const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

export function createKafka(env: KafkaEnv, clientId: string, logger: Logger): Kafka {
  const kafkaLogger = logger.child({ component: 'kafkajs' });
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
        // which kafkajs retries).
        const expected =
          (namespace === 'Connection' && message.startsWith('Response ')) || message.includes('concurrent operation on the same transaction');
        const name = expected ? 'debug' : (levelNames[level] ?? 'info');
        kafkaLogger[name]({ namespace, ...extra }, message);
      },
  };
  const sasl = saslOptions(env);
  if (sasl !== undefined) config.sasl = sasl;
  return new Kafka(config);
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

/**
 * Assigns partition p of every subscribed topic to the same member, so a consumer that joins
 * co-partitioned topics by key sees all their records of one key (Kafka Streams' tasks).
 * Partitions are dealt round robin over the members sorted by id.
 */
export const CoPartitionedAssigner: PartitionAssigner = ({ cluster }) => ({
  name: 'CoPartitionedAssigner',
  version: 0,
  async assign({ members, topics }) {
    const sortedMembers = members.map(({ memberId }) => memberId).sort();
    const partitionCount = Math.max(...topics.map((topic) => cluster.findTopicPartitionMetadata(topic).length));
    const assignment: Record<string, Record<string, number[]>> = {};
    for (const memberId of sortedMembers) assignment[memberId] = {};
    for (let partition = 0; partition < partitionCount; partition++) {
      const memberId = sortedMembers[partition % sortedMembers.length]!;
      for (const topic of topics) {
        if (partition >= cluster.findTopicPartitionMetadata(topic).length) continue;
        (assignment[memberId]![topic] ??= []).push(partition);
      }
    }
    return sortedMembers.map((memberId) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: assignment[memberId]!, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'CoPartitionedAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});

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
  const admin = kafka.admin();
  await admin.connect();
  let ends: Map<number, bigint>;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    ends = new Map(
      offsets.filter((o) => partitions.includes(o.partition) && BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high)]),
    );
  } finally {
    await admin.disconnect();
  }
  if (ends.size === 0) return result;

  const consumer = kafka.consumer({
    groupId: `${groupPrefix}-restore-${randomUUID()}`,
    readUncommitted: false,
    maxBytesPerPartition: 8 * 1024 * 1024,
    maxWaitTimeInMs: 100,
  });
  const pending = new Set(ends.keys());
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
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
      eachBatch: async ({ batch }) => {
        const entries = result.get(batch.partition);
        if (entries === undefined || !pending.has(batch.partition)) return;
        for (const m of batch.messages) entries.push({ key: m.key?.toString() ?? '', value: m.value });
      },
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`reading ${topic} partitions ${[...pending].join(',')} to their end timed out`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
  return result;
}
