/**
 * Process lifecycle shared by every service: start, then on SIGTERM/SIGINT stop fetching, finish
 * the batch in hand, commit and exit 0 within the shutdown budget. A configuration error stops
 * start-up with a message naming the variable.
 */
import { getHeapStatistics } from 'node:v8';
import { ConfigError, type KafkaEnv, type ServiceEnv } from './config.ts';
import { createKafka, ensureTopics, type Kafka } from './kafka.ts';
import { createLogger, type Logger } from './logger.ts';
import { serveMetrics, ServiceMetrics } from './metrics.ts';
import { untilSuccess } from './retry.ts';
import { topicDefinitions } from './topics.ts';

export interface Stoppable {
  stop(): Promise<void>;
}

/** Docker and the design give a service 10 s after SIGTERM; leave a margin for process exit. */
const SHUTDOWN_BUDGET_MS = 9_000;

export function runService(name: string, start: (logger: Logger) => Promise<Stoppable>): void {
  const logger = createLogger(name);
  // How large its heap may grow (NODE_OPTIONS sets it: scripts/lib/node-options.ts).
  logger.info({ heapLimitMb: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20), nodeOptions: process.env['NODE_OPTIONS'] ?? '' }, 'starting');
  let running: Stoppable | undefined;
  let stopping = false;

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const timer = setTimeout(() => {
      logger.error({ budgetMs: SHUTDOWN_BUDGET_MS }, 'shutdown took too long; exiting with the batch in hand uncommitted (it is replayed on restart)');
      process.exit(1);
    }, SHUTDOWN_BUDGET_MS);
    timer.unref();
    void (running?.stop() ?? Promise.resolve())
      .then(() => {
        logger.info('stopped cleanly');
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Started from a terminal that closed: as SIGTERM, not an exit with the batch in hand.
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled promise rejection');
    process.exit(1);
  });

  start(logger)
    .then((service) => {
      running = service;
      if (stopping) void service.stop().finally(() => process.exit(0));
    })
    .catch((err: unknown) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`${name}: ${err.message}\n`);
        process.exit(2);
      }
      logger.fatal({ err }, 'failed to start');
      process.exit(1);
    });
}

export interface ServiceContext {
  readonly kafka: Kafka;
  readonly metrics: ServiceMetrics;
  /** The runner settings every service takes from its environment. */
  readonly runnerSettings: { retryMaxMs: number; fetchMinBytes: number; fetchMaxWaitMs: number; maxBytes: number; maxBytesPerPartition: number; slots: number; producerPer: 'slot' | 'instance'; commitIntervalMs: number; maxRecordsPerTransaction: number; transactionStreamMs: number };
  /** Closes the metrics endpoint. */
  close(): void;
}

/**
 * What every service does first: a Kafka client, its metrics and the /metrics and /health endpoint,
 * and the topics (created when missing, co-partitioning checked; retried while the broker starts).
 */
export async function connectService(name: string, env: KafkaEnv & ServiceEnv, logger: Logger): Promise<ServiceContext> {
  const kafka = createKafka(env, name, logger);
  const metrics = new ServiceMetrics(name);
  // Served from the start, so that a service waiting for Kafka shows as running and not healthy yet.
  const server = await serveMetrics(metrics, env.METRICS_HOST, env.METRICS_PORT, logger);
  metrics.healthy = false;
  await untilSuccess('creating topics', logger, () => ensureTopics(kafka, topicDefinitions(env.TOPIC_PARTITIONS), logger), env.RETRY_MAX_MS);
  metrics.healthy = true;
  return {
    kafka,
    metrics,
    runnerSettings: { retryMaxMs: env.RETRY_MAX_MS, fetchMinBytes: env.FETCH_MIN_BYTES, fetchMaxWaitMs: env.FETCH_MAX_WAIT_MS, maxBytes: env.FETCH_MAX_BYTES, maxBytesPerPartition: env.FETCH_MAX_PARTITION_BYTES, slots: env.TRANSACTION_SLOTS, producerPer: env.TRANSACTIONAL_PRODUCER, commitIntervalMs: env.COMMIT_INTERVAL_MS, maxRecordsPerTransaction: env.TRANSACTION_MAX_RECORDS === 0 ? Number.POSITIVE_INFINITY : env.TRANSACTION_MAX_RECORDS, transactionStreamMs: env.TRANSACTION_STREAM_MS },
    close: () => server?.close(),
  };
}
