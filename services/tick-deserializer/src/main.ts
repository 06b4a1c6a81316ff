/**
 * tick-deserializer: ticks ──▶ validate ──▶ prices (keyed by symbol), invalid ──▶ ticks.dlq.
 * Exactly once: outputs and input offsets are committed in one Kafka transaction per batch.
 */
import {
  createKafka,
  ensureTopics,
  envInt,
  kafkaEnv,
  parseEnv,
  runService,
  runTransform,
  serveMetrics,
  serviceEnv,
  ServiceMetrics,
  topicDefinitions,
  TOPICS,
  untilSuccess,
} from '@tradeflow/shared';
import { z } from 'zod';
import { deserializeTicks, SERVICE_NAME } from './deserialize.ts';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    MAX_TICK_BYTES: envInt(64, 1_048_576).default(4_096),
  });
  const kafka = createKafka(env, SERVICE_NAME, logger);
  await untilSuccess('creating topics', logger, () => ensureTopics(kafka, topicDefinitions(env.TOPIC_PARTITIONS), logger), env.RETRY_MAX_MS);
  const metrics = new ServiceMetrics(SERVICE_NAME);
  const server = await serveMetrics(metrics, env.METRICS_HOST, env.METRICS_PORT, logger);
  const consumer = await runTransform({
    kafka,
    logger,
    metrics,
    groupId: env.GROUP_ID,
    topics: [TOPICS.ticks],
    transactionalIdPrefix: env.GROUP_ID,
    retryMaxMs: env.RETRY_MAX_MS,
    fetchMinBytes: env.FETCH_MIN_BYTES,
    fetchMaxWaitMs: env.FETCH_MAX_WAIT_MS,
    handle: (records) => deserializeTicks(records, env.MAX_TICK_BYTES),
  });
  return {
    stop: async () => {
      await consumer.stop();
      server?.close();
    },
  };
});
