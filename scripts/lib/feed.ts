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
  partitionFor,
  parseEnv,
  topicDefinitions,
  untilSuccess,
  type Producer,
} from '@tradeflow/shared';

/** While the broker starts (or restarts), the feed waits: each kind of failure is logged once. */
const RETRY = { maxBackoffMs: 5_000 };
/**
 * One call's share of a partition: a record batch the broker takes under its default
 * message.max.bytes (1 MiB), with room for multi-byte characters (the sizes below count UTF-16
 * units) and each record's framing.
 */
const PIECE_BYTES = 256 * 1024;
const RECORD_OVERHEAD = 24;
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

/**
 * The partitions of `topic` that a failed send wrote all the same: the patched client names them on
 * the error (or a cause of it). None when it does not: the call failed before sending anything.
 */
export function writtenPartitions(error: unknown, topic: string): Set<number> {
  const written = new Set<number>();
  for (let e: unknown = error, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const acknowledged = (e as { acknowledgedPartitions?: unknown }).acknowledgedPartitions;
    if (!Array.isArray(acknowledged)) continue;
    for (const tp of acknowledged as { topic?: unknown; partition?: unknown }[]) if (tp.topic === topic && typeof tp.partition === 'number') written.add(tp.partition);
  }
  return written;
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

/**
 * Sends the messages; an error that waiting does not mend (a topic refusing its batches as too
 * large, a bad setting) ends the script with its message and exit code 1, not a stack trace.
 */
export async function runFeed(options: FeedOptions, messages: Iterable<FeedMessage>): Promise<FeedSummary> {
  try {
    return await sendFeed(options, messages);
  } catch (error) {
    process.stderr.write(`${options.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

async function sendFeed(options: FeedOptions, messages: Iterable<FeedMessage>): Promise<FeedSummary> {
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
  // Idempotent, and each chunk is sent as one call (one produce request per broker) that knows
  // its outcome per partition. The client retries a call until every partition acknowledged it,
  // with its sequence numbers unchanged (patches/kafkajs: sendMessages), so the broker drops a copy
  // it already has; a call fails only when a partition refused it for good (OUT_OF_ORDER_SEQUENCE_NUMBER
  // and the like after a leader moved: the refused batch was not written), and then its error names
  // the partitions that were written all the same (acknowledgedPartitions). Only the others are
  // sent again, with a new producer id. Sending the whole chunk again wrote the partitions that had
  // acknowledged it a second time: duplicated orders after a broker failover. A call per partition
  // is exact too, but made a chunk 5 or 6 produce requests instead of one with 6 partitions (and
  // as many more fetches by the feed's readers), and in the benchmarks the feeds share the broker
  // with the services measured. (A transaction per chunk costs the broker about 4 times the CPU.)
  const newProducer = (): Producer =>
    kafka.producer({
      createPartitioner: defaultPartitioner,
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: RETRY.maxBackoffMs },
    });
  const admin = kafka.admin();
  await untilSuccess('connecting to Kafka', logger, () => admin.connect(), RETRY);
  const partitionCount = await untilSuccess(
    'reading the partition count',
    logger,
    async () => (await admin.fetchTopicMetadata({ topics: [options.topic] })).topics[0]!.partitions.length,
    RETRY,
  );
  await admin.disconnect();
  let producer = newProducer();
  await untilSuccess('connecting the producer', logger, () => producer.connect(), RETRY);
  /** False after the producer was replaced: the next attempt connects it first. */
  let connected = true;
  type Outgoing = { key: string | null; value: string; partition: number };
  const pieces = (messages: Outgoing[]): Outgoing[][] => {
    const out: Outgoing[][] = [[]];
    let bytes = 0;
    for (const m of messages) {
      const size = m.value.length + (m.key?.length ?? 0) + RECORD_OVERHEAD;
      if (bytes + size > PIECE_BYTES && out[out.length - 1]!.length > 0) {
        out.push([]);
        bytes = 0;
      }
      out[out.length - 1]!.push(m);
      bytes += size;
    }
    return out;
  };
  /**
   * One attempt at a chunk's partitions still to send (`pending`, one list of pieces per partition):
   * a call per round of pieces (each partition's next one; usually there is one round), and leaves
   * in `pending` only what was not written, before anything else can fail.
   */
  const sendPending = async (pending: { lists: Outgoing[][][] }): Promise<void> => {
    if (!connected) {
      await producer.connect();
      connected = true;
    }
    let error: unknown;
    while (pending.lists.length > 0) {
      try {
        await producer.send({ topic: options.topic, acks: -1, messages: pending.lists.flatMap((pieces) => pieces[0]!) });
      } catch (refusal) {
        error = refusal;
      }
      const written = error === undefined ? undefined : writtenPartitions(error, options.topic);
      for (const pieces of pending.lists) if (written === undefined || written.has(pieces[0]![0]!.partition)) pieces.shift();
      pending.lists = pending.lists.filter((pieces) => pieces.length > 0);
      if (error !== undefined) break;
    }
    if (error === undefined) return;
    const refused = pending.lists;
    if (refused.length === 0) return;
    const kind = failureKind(error);
    if (kind === 'MESSAGE_TOO_LARGE' || kind === 'RECORD_LIST_TOO_LARGE') {
      const largest = Math.max(...refused.flat(2).map((m) => Buffer.byteLength(m.value) + (m.key === null ? 0 : Buffer.byteLength(m.key))));
      throw Object.assign(
        new Error(`${options.topic} refused a batch of up to ${PIECE_BYTES / 1024} KiB as too large (${kind}; its largest message is ${largest} bytes): the topic's max.message.bytes (and the broker's message.max.bytes) must be above that`, { cause: error }),
        { permanent: true },
      );
    }
    if (PRODUCER_STATE_LOST.has(kind)) {
      logger.warn({ reason: kind, partitions: refused.map((pieces) => pieces[0]![0]!.partition) }, 'partitions refused the producer for good after a broker failover: sending them again with a new producer id');
      await producer.disconnect().catch(() => undefined);
      producer = newProducer();
      connected = false;
    }
    throw new Error(`${refused.length} partition(s) refused the chunk (${kind})`, { cause: error });
  };

  // At a rate: a chunk every 20 ms, larger when the feed fell behind (a busy broker makes a send
  // slow), so that it catches up instead of falling further back.
  const MAX_CHUNK = 10_000;
  const minChunk = options.rate > 0 ? Math.max(1, Math.min(2_000, Math.round(options.rate / 50))) : MAX_CHUNK;
  let chunkSize = minChunk;
  let sent = 0;
  let lastReport = started;
  let chunk: FeedMessage[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    const byPartition = new Map<number, Outgoing[]>();
    for (const m of chunk) {
      const partition = partitionFor({ topic: options.topic, key: m.key, value: m.value }, partitionCount);
      let list = byPartition.get(partition);
      if (list === undefined) byPartition.set(partition, (list = []));
      list.push({ key: m.key, value: m.value, partition });
    }
    // A partition's share goes in pieces of at most PIECE_BYTES: one call is one record batch,
    // which the broker refuses above message.max.bytes (1 MiB by default).
    const pending = { lists: [...byPartition.values()].map(pieces) };
    await untilSuccess('sending', logger, () => sendPending(pending), RETRY);
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
  // Stopped (docker compose stop, Ctrl-C): the chunk in hand is sent first, then the feed exits 0
  // with its summary.
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
  }
  const elapsedSeconds = (performance.now() - started) / 1000;
  return { sent, elapsedSeconds, ratePerSecond: sent / elapsedSeconds };
}
