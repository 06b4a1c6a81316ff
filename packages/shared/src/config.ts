/**
 * Configuration from environment variables, validated by zod at start-up. A bad value stops the
 * service with a message naming the variable, its value and what is expected.
 */
import { z } from 'zod';
import { DEFAULT_PARTITIONS } from './topics.ts';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const SECRET = /PASSWORD|SECRET|TOKEN/;

export function parseEnv<S extends z.ZodRawShape>(
  shape: S,
  env: Readonly<Record<string, string | undefined>> = process.env,
): z.infer<z.ZodObject<S>> {
  const picked: Record<string, string | undefined> = {};
  for (const name of Object.keys(shape)) {
    const value = env[name];
    picked[name] = value === '' ? undefined : value;
  }
  const result = z.object(shape).safeParse(picked);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? '(environment)');
    const raw = picked[name];
    const shown = raw === undefined ? 'unset' : SECRET.test(name) ? '(hidden)' : JSON.stringify(raw);
    return `  ${name}=${shown}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration, fix these environment variables:\n${lines.join('\n')}`);
}

export const envInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+$/, { error: 'must be a whole number' })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }));

export const envNumber = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+(\.\d+)?$/, { error: 'must be a number' })
    .transform(Number)
    .pipe(z.number().min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` }));

export const envBool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const hostPort = z.string().regex(/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/, { error: 'must be host:port' });

export const kafkaEnv = {
  KAFKA_BROKERS: z
    .string()
    .default('127.0.0.1:9092')
    .transform((s) => s.split(',').map((b) => b.trim()).filter((b) => b.length > 0))
    .pipe(z.array(hostPort, { error: 'must be a comma-separated list of host:port' }).min(1, { error: 'must name at least one broker' })),
  KAFKA_CLIENT_ID: z.string().optional(),
  KAFKA_SSL: envBool.default(false),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512'], { error: 'must be plain, scram-sha-256 or scram-sha-512' }).optional(),
  KAFKA_SASL_USERNAME: z.string().optional(),
  KAFKA_SASL_PASSWORD: z.string().optional(),
  /** What reads a changelog to its end when a stage restores its state: the lean reader of committed records, or the Kafka client's consumer. */
  KAFKA_RESTORE_READER: z.enum(['wire', 'kafkajs'], { error: 'must be wire or kafkajs' }).default('wire'),
  /** What fetches the records of a materialized view (portfolio's accounts and prices): the lean reader following the group's assignment, or the Kafka client's consumer. */
  KAFKA_VIEW_READER: z.enum(['wire', 'kafkajs'], { error: 'must be wire or kafkajs' }).default('wire'),
  /** What fetches the inputs of an exactly-once stage (order-matcher, fill-publisher, tick-deserializer): the lean reader following the group's assignment, or the Kafka client's consumer. */
  KAFKA_STAGE_READER: z.enum(['wire', 'kafkajs'], { error: 'must be wire or kafkajs' }).default('wire'),
  /** Exactly-once stages produce with the lean transactional producer only; the setting is kept to name a stale `kafkajs`. */
  KAFKA_STAGE_PRODUCER: z.enum(['wire'], { error: "must be wire: exactly-once stages produce with the lean transactional producer (with SASL too); the Kafka client's is no longer offered" }).optional(),
  TOPIC_PARTITIONS: envInt(1, 10_000).default(DEFAULT_PARTITIONS),
};
export type KafkaEnv = z.infer<z.ZodObject<typeof kafkaEnv>>;

export const influxEnv = {
  INFLUX_URL: z.url({ error: 'must be a URL such as http://127.0.0.1:8086' }).default('http://127.0.0.1:8086'),
  INFLUX_DB: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: 'must be a database name (letters, digits, _ or -)' }).default('tradeflow'),
  INFLUX_USERNAME: z.string().optional(),
  INFLUX_PASSWORD: z.string().optional(),
};
export type InfluxEnv = z.infer<z.ZodObject<typeof influxEnv>>;

export const serviceEnv = {
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], { error: 'must be trace, debug, info, warn, error, fatal or silent' }).default('info'),
  /** Port of the /health and /metrics HTTP endpoint; 0 turns it off. */
  METRICS_PORT: envInt(0, 65_535).default(0),
  METRICS_HOST: z.string().default('127.0.0.1'),
  /** Upper bound of the wait between retries while Kafka or InfluxDB is unreachable. */
  RETRY_MAX_MS: envInt(100, 600_000).default(10_000),
  /** A fetch waits for this many bytes (or FETCH_MAX_WAIT_MS): larger batches mean fewer transactions. */
  FETCH_MIN_BYTES: envInt(1, 64 * 1024 * 1024).default(1),
  FETCH_MAX_WAIT_MS: envInt(1, 60_000).default(200),
  /**
   * The most bytes one fetch returns (FETCH_MAX_BYTES, all partitions) and takes of one partition
   * (FETCH_MAX_PARTITION_BYTES). Records keep their fetch's buffer alive while they are queued, and
   * fetching waits while a lane holds more than twice a partition's share, so these bound the
   * memory outside the heap; smaller means smaller transactions in a backlog.
   */
  FETCH_MAX_BYTES: envInt(64 * 1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  FETCH_MAX_PARTITION_BYTES: envInt(16 * 1024, 1024 * 1024 * 1024).default(2 * 1024 * 1024),
  /**
   * Exactly-once stages: how many transactional producers (slots) share a stage's partitions. Each
   * slot is assigned whole to one instance, so this is also the most instances that can share the
   * work; 1 gives the fewest transactions. Every instance of a group must use the same value.
   */
  TRANSACTION_SLOTS: envInt(1, 10_000).default(1),
  /**
   * Exactly-once stages: `slot` gives each of the TRANSACTION_SLOTS its own transactional producer;
   * `instance` gives each instance one (TRANSACTION_SLOTS is then not used): the group deals the
   * partitions over however many instances there are, and their offset commits carry the group
   * generation so that an instance that lost partitions in a rebalance cannot commit for them
   * (KIP-447). Every instance of a group must use the same value.
   */
  TRANSACTIONAL_PRODUCER: z.enum(['slot', 'instance'], { error: 'must be slot or instance' }).default('instance'),
  /**
   * The least time between the starts of a stage's transactions (influx-writer: of a partition's
   * writes): what arrives sooner joins the next one; a stage idle for longer starts at once. Each
   * transaction costs the broker about 3 ms of CPU whatever its size, so 0 (a transaction as soon
   * as the last one ends) saturates a small machine at a few hundred orders/s.
   */
  COMMIT_INTERVAL_MS: envInt(0, 60_000).default(20),
  /**
   * The most input records one transaction (or sink write) of a lane takes: a backlog is worked
   * off in transactions of this size instead of one holding all that was fetched, which bounds
   * the heap; the rest waits in the lane, and fetching waits while the lane holds much. 0: no
   * limit (the default: a limit of 5,000 cut order-matcher's peak RSS by about a fifth and, in
   * three runs, the backlog drain by a third).
   */
  TRANSACTION_MAX_RECORDS: envInt(0, 10_000_000).default(0),
  /**
   * Exactly-once stages: a transaction takes its lane a piece at a time (TRANSACTION_MAX_RECORDS
   * input records each; when that is 0, whole fetched batches of up to 1,000 together), sending each piece while the next is prepared, for up
   * to this many milliseconds or until the lane has nothing queued, then commits: memory holds a
   * piece, not a whole transaction. 0: a transaction takes what its lane queued when it starts.
   */
  TRANSACTION_STREAM_MS: envInt(0, 60_000).default(200),
};
export type ServiceEnv = z.infer<z.ZodObject<typeof serviceEnv>>;
