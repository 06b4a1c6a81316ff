/**
 * The sending half of every seed script: creates missing topics, produces a stream of messages at
 * a given rate (0 = as fast as possible), waits while the broker is not ready (retrying with backoff),
 * shows progress and ends with a summary. --dry-run prints the messages instead.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import {
  createKafka,
  createLogger,
  defaultPartitioner,
  ensureTopics,
  kafkaEnv,
  parseEnv,
  topicDefinitions,
  untilSuccess,
  type Producer,
} from '@tradeflow/shared';

/** While the broker starts (or restarts), the feed waits: each kind of failure is logged once. */
const RETRY = { maxBackoffMs: 5_000 };
/**
 * A feed that crashed mid-transaction holds back its partitions' last stable offset (what
 * read_committed consumers may read) until the broker aborts the transaction after this long.
 */
const FEED_TRANSACTION_TIMEOUT_MS = 20_000;

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
  // Each chunk is one transaction, so a chunk that fails part-way is never written twice: a send
  // that reached some partitions and then failed (a broker crashed; an idempotent producer's
  // sequence numbers refused after a leader moved) is aborted and sent again whole, and
  // read_committed readers (every service) see exactly one copy. Retrying the whole chunk without a
  // transaction wrote the acknowledged partitions again (duplicated orders after a broker failover).
  // The transaction also commits, as the offset of a consumer group of the feed's own, how many
  // messages are sent with it: after a commit that failed without an answer that count tells
  // whether it went through, as the services' input offsets do for theirs.
  const transactionalId = `${options.name}-feed-${randomUUID()}`;
  const newProducer = (): Producer =>
    kafka.producer({
      createPartitioner: defaultPartitioner,
      allowAutoTopicCreation: false,
      idempotent: true,
      transactionalId,
      transactionTimeout: FEED_TRANSACTION_TIMEOUT_MS,
      maxInFlightRequests: 1,
      // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS for a few ms.
      retry: { retries: 20, initialRetryTime: 5, maxRetryTime: RETRY.maxBackoffMs },
    });
  const admin = kafka.admin();
  await untilSuccess('connecting to Kafka', logger, () => admin.connect(), RETRY);
  /** How many messages the feed's committed transactions hold (its group's offset). */
  const committedThrough = async (): Promise<number> => {
    const [entry] = await admin.fetchOffsets({ groupId: transactionalId, topics: [options.topic] });
    const offset = Number(entry?.partitions.find((p) => p.partition === 0)?.offset ?? -1);
    return offset < 0 ? 0 : offset;
  };
  let producer = newProducer();
  await untilSuccess('connecting the producer', logger, () => producer.connect(), RETRY);
  /**
   * Sends one chunk in one transaction; `through` is the count of messages sent once it commits.
   * On any failure the producer is replaced by a new one with the same transactional id: opening it
   * settles the failed transaction (aborted, or committed if its commit had reached the
   * coordinator) and starts clean sequence numbers. The chunk is sent again unless it committed.
   */
  const send = async (messages: { key: string | null; value: string }[], through: number) => {
    try {
      const transaction = await producer.transaction();
      await transaction.send({ topic: options.topic, acks: -1, messages });
      await transaction.sendOffsets({ consumerGroupId: transactionalId, topics: [{ topic: options.topic, partitions: [{ partition: 0, offset: String(through) }] }] });
      await transaction.commit();
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      producer = newProducer();
      await untilSuccess('opening the producer again', logger, () => producer.connect(), RETRY);
      if ((await untilSuccess('reading what the feed committed', logger, committedThrough, RETRY)) >= through) return;
      throw error;
    }
  };

  // At a rate: a chunk every 20 ms, larger when the feed fell behind (a transaction takes a few
  // round trips, which a busy broker makes long), so that it catches up instead of falling further back.
  const MAX_CHUNK = 10_000;
  const minChunk = options.rate > 0 ? Math.max(1, Math.min(2_000, Math.round(options.rate / 50))) : MAX_CHUNK;
  let chunkSize = minChunk;
  let sent = 0;
  let lastReport = started;
  let chunk: FeedMessage[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const messages = chunk.map((m) => ({ key: m.key, value: m.value }));
    await untilSuccess('sending', logger, () => send(messages, sent + messages.length), RETRY);
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
      const behind = Math.floor((options.rate * (performance.now() - started)) / 1000) - sent;
      chunkSize = Math.max(minChunk, Math.min(MAX_CHUNK, behind));
    }
  };
  // Stopped (docker compose stop, Ctrl-C): the chunk in hand is committed first, so no transaction
  // is left open to hold back what read_committed consumers see until the broker times it out.
  let stopRequested = false;
  const onSignal = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    log(`${options.name}: stopping after the chunk in hand`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    for (const message of messages) {
      if (stopRequested) break;
      chunk.push(message);
      if (chunk.length >= chunkSize) await flush();
    }
    await flush();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await producer.disconnect();
    // The feed's group only ever held its count: not left behind in the cluster's list of groups.
    await admin.deleteGroups([transactionalId]).catch(() => undefined);
    await admin.disconnect();
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  return { sent, elapsedSeconds, ratePerSecond: sent / elapsedSeconds };
}
