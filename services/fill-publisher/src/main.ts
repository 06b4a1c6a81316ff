/**
 * fill-publisher, two exactly-once stages in one process:
 *   executions ──fill──▶ fills (keyed by taxpayer_id), invalid ──▶ executions.dlq
 *   fills ──sum──▶ positions (compacted, keyed by taxpayer_id; also this stage's changelog)
 */
import {
  createKafka,
  ensureTopics,
  kafkaEnv,
  parseEnv,
  runService,
  runStateful,
  runTransform,
  serveMetrics,
  serviceEnv,
  ServiceMetrics,
  topicDefinitions,
  TOPICS,
  untilSuccess,
} from '@tradeflow/shared';
import { z } from 'zod';
import { createPositionsHandler, fillExecutions, SERVICE_NAME } from './handler.ts';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({ ...kafkaEnv, ...serviceEnv, GROUP_ID: z.string().min(1).default(SERVICE_NAME) });
  const kafka = createKafka(env, SERVICE_NAME, logger);
  await untilSuccess('creating topics', logger, () => ensureTopics(kafka, topicDefinitions(env.TOPIC_PARTITIONS), logger), env.RETRY_MAX_MS);
  const metrics = new ServiceMetrics(SERVICE_NAME);
  const server = await serveMetrics(metrics, env.METRICS_HOST, env.METRICS_PORT, logger);

  const filling = await runTransform({
    kafka,
    logger: logger.child({ stage: 'fill' }),
    metrics,
    groupId: `${env.GROUP_ID}-fill`,
    topics: [TOPICS.executions],
    transactionalIdPrefix: `${env.GROUP_ID}-fill`,
    retryMaxMs: env.RETRY_MAX_MS,
    fetchMinBytes: env.FETCH_MIN_BYTES,
    fetchMaxWaitMs: env.FETCH_MAX_WAIT_MS,
    handle: (records) => fillExecutions(records, Date.now() / 1000),
  });
  const positions = await runStateful({
    kafka,
    logger: logger.child({ stage: 'positions' }),
    metrics,
    groupId: `${env.GROUP_ID}-positions`,
    topics: [TOPICS.fills],
    transactionalIdPrefix: `${env.GROUP_ID}-positions`,
    changelogTopic: TOPICS.positions,
    retryMaxMs: env.RETRY_MAX_MS,
    fetchMinBytes: env.FETCH_MIN_BYTES,
    fetchMaxWaitMs: env.FETCH_MAX_WAIT_MS,
    handler: createPositionsHandler(metrics, logger),
  });
  return {
    stop: async () => {
      await Promise.all([filling.stop(), positions.stop()]);
      server?.close();
    },
  };
});
