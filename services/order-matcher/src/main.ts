/**
 * order-matcher, two exactly-once stages in one process:
 *   orders ──split──▶ orders.components (keyed by symbol), invalid ──▶ orders.dlq
 *   orders.components + prices (co-partitioned) ──match──▶ executions, state ──▶ order-matcher.state
 */
import {
  connectService,
  envInt,
  kafkaEnv,
  parseEnv,
  runService,
  runStateful,
  runTransform,
  serviceEnv,
  TOPICS,
} from '@tradeflow/shared';
import { z } from 'zod';
import { createMatchHandler } from './handler.ts';
import { Matcher } from './matcher.ts';
import { SERVICE_NAME, splitOrders } from './split.ts';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    MAX_PRICE_AGE_MS: envInt(1, 86_400_000).default(5_000),
    NETTING_WINDOW_MS: envInt(1, 3_600_000).default(1_000),
  });
  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);
  const matcher = new Matcher({
    maxPriceAgeSeconds: env.MAX_PRICE_AGE_MS / 1000,
    windowSeconds: env.NETTING_WINDOW_MS / 1000,
    now: () => Date.now() / 1000,
  });

  const splitter = await runTransform({
    kafka,
    logger: logger.child({ stage: 'split' }),
    metrics,
    groupId: `${env.GROUP_ID}-split`,
    topics: [TOPICS.orders],
    transactionalIdPrefix: `${env.GROUP_ID}-split`,
    ...runnerSettings,
    handle: splitOrders,
  });
  const matching = await runStateful({
    kafka,
    logger: logger.child({ stage: 'match' }),
    metrics,
    groupId: env.GROUP_ID,
    topics: [TOPICS.orderComponents, TOPICS.prices],
    transactionalIdPrefix: `${env.GROUP_ID}-match`,
    changelogTopic: TOPICS.matcherState,
    ...runnerSettings,
    handler: createMatchHandler(matcher, metrics, logger),
  });
  return {
    stop: async () => {
      await Promise.all([splitter.stop(), matching.stop()]);
      close();
    },
  };
});
