/**
 * The sending half of every seed script: creates missing topics, produces a stream of messages at
 * a given rate (0 = as fast as possible), waits while the broker is not ready (retrying with backoff),
 * shows progress and ends with a summary. --dry-run prints the messages instead.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import {
  createKafka,
  createLogger,
  defaultPartitioner,
  ensureTopics,
  failureKind,
  kafkaEnv,
  parseEnv,
  topicDefinitions,
  untilSuccess,
  type Producer,
} from '@tradeflow/shared';

/** While the broker starts (or restarts), the feed waits: each kind of failure is logged once. */
const RETRY = { maxBackoffMs: 5_000 };
/** Refusals after which the idempotent producer's state is gone: only a new producer gets on. */
const PRODUCER_STATE_LOST = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']);

export interface FeedMessage {
  readonly key: string | null;
  readonly value: string;
}

export interface FeedOptions {
  readonly name: string;
  readonly topic: string;
  readonly brokers: readonly string[];
  readonly partitions: number;
  readonly rate: number;
  readonly dryRun: boolean;
  readonly total: number;
  readonly quiet?: boolean;
}

export interface FeedSummary {
  readonly sent: number;
  readonly elapsedSeconds: number;
  readonly ratePerSecond: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Options every seed script shares; `defaults.count` is the script's default message count. */
export function parseFeedArgs(name: string, usage: string, defaults: { count: number; topic: string }, extra: ParseArgsOptionsConfig = {}) {
  const parsed = parseArgs({
    options: {
      count: { type: 'string', default: String(defaults.count) },
      rate: { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
      brokers: { type: 'string' },
      topic: { type: 'string', default: defaults.topic },
      partitions: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      ...extra,
    },
    strict: true,
  });
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values['help']) {
    process.stdout.write(
      `usage: ${name} [--count N] [--rate PER_SECOND] [--seed N] [--brokers host:port,...] [--topic T] [--partitions N] [--dry-run] [--quiet]${usage}\n`,
    );
    process.exit(0);
  }
  const env = parseEnv(kafkaEnv, {
    ...process.env,
    ...(typeof values['brokers'] === 'string' ? { KAFKA_BROKERS: values['brokers'] } : {}),
    ...(typeof values['partitions'] === 'string' ? { TOPIC_PARTITIONS: values['partitions'] } : {}),
  });
  const number = (flag: string, min: number): number => {
    const raw = values[flag];
    const n = Number(raw);
    if (typeof raw !== 'string' || !Number.isFinite(n) || n < min) {
      process.stderr.write(`${name}: --${flag} must be a number >= ${min}, got ${String(raw)}\n`);
      process.exit(2);
    }
    return n;
  };
  /** The sending options every seed script takes from these flags, for `total` messages. */
  const feedOptions = (total: number): FeedOptions => ({
    name,
    topic: String(values['topic']),
    brokers: env.KAFKA_BROKERS,
    partitions: env.TOPIC_PARTITIONS,
    rate: number('rate', 0),
    dryRun: values['dry-run'] === true,
    total,
    quiet: values['quiet'] === true,
  });
  return { values, env, number, feedOptions };
}

export async function runFeed(options: FeedOptions, messages: Iterable<FeedMessage>): Promise<FeedSummary> {
  const started = performance.now();
  const log = (line: string) => {
    if (!options.quiet) process.stderr.write(`${line}\n`);
  };
  if (options.dryRun) {
    let sent = 0;
    for (const message of messages) {
      process.stdout.write(`${message.value}\n`);
      sent++;
    }
    const elapsedSeconds = (performance.now() - started) / 1000;
    return { sent, elapsedSeconds, ratePerSecond: sent / elapsedSeconds };
  }

  const logger = createLogger(options.name, process.env['LOG_LEVEL'] ?? 'warn');
  const kafka = createKafka({ ...parseEnv(kafkaEnv), KAFKA_BROKERS: [...options.brokers] }, options.name, logger);
  const definitions = topicDefinitions(options.partitions);
  const topics = definitions.some((d) => d.name === options.topic)
    ? definitions
    : [...definitions, { ...definitions[0]!, name: options.topic as never, description: 'custom topic' }];
  await untilSuccess('creating topics', logger, () => ensureTopics(kafka, topics, logger), RETRY);
  // Idempotent: a request that reaches some partitions and is retried (kafkajs retries the whole
  // request, e.g. while a new topic's partitions are still electing leaders) must not write those
  // partitions twice: seeded orders would otherwise be duplicated.
  // The client retries a send until every partition acknowledged it, sending again only the
  // partitions not acknowledged yet (patches/kafkajs: sendMessages), so it never gives up on a
  // chunk that is half written: sending the whole chunk again would write that half twice.
  const newProducer = (): Producer =>
    kafka.producer({
      createPartitioner: defaultPartitioner,
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: RETRY.maxBackoffMs },
    });
  let producer = newProducer();
  await untilSuccess('connecting the producer', logger, () => producer.connect(), RETRY);
  /**
   * Sends one chunk. After a partition leader moved (a broker crashed), the Kafka client's
   * idempotent producer can be refused for good (OUT_OF_ORDER_SEQUENCE_NUMBER: its sequence numbers
   * ran ahead of what the new leader holds; the refused batch was not written). A new producer (a
   * new producer id, sequences from 0) sends it again; the client retries anything else itself.
   */
  const send = async (messages: { key: string | null; value: string }[]) => {
    try {
      await producer.send({ topic: options.topic, acks: -1, messages });
    } catch (error) {
      const kind = failureKind(error);
      if (PRODUCER_STATE_LOST.has(kind)) {
        logger.warn({ reason: kind }, 'the producer was refused for good after a broker failover: sending with a new producer id');
        await producer.disconnect().catch(() => undefined);
        producer = newProducer();
        await producer.connect();
      }
      throw error;
    }
  };

  const chunkSize = options.rate > 0 ? Math.max(1, Math.min(2_000, Math.round(options.rate / 50))) : 2_000;
  let sent = 0;
  let lastReport = started;
  let chunk: FeedMessage[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const messages = chunk.map((m) => ({ key: m.key, value: m.value }));
    await untilSuccess('sending', logger, () => send(messages), RETRY);
    sent += chunk.length;
    chunk = [];
    const now = performance.now();
    if (now - lastReport >= 1_000) {
      lastReport = now;
      log(`${options.name}: sent ${sent}/${options.total} (${Math.round(sent / ((now - started) / 1000))}/s)`);
    }
    if (options.rate > 0) {
      const due = started + (sent / options.rate) * 1000;
      if (due > now) await sleep(due - now);
    }
  };
  try {
    for (const message of messages) {
      chunk.push(message);
      if (chunk.length >= chunkSize) await flush();
    }
    await flush();
  } finally {
    await producer.disconnect();
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  return { sent, elapsedSeconds, ratePerSecond: sent / elapsedSeconds };
}
