/**
 * order-matcher, one exactly-once stateful stage:
 *   orders ──split──▶ orders.components (keyed by symbol), invalid ──▶ orders.dlq
 *   orders.components + prices (co-partitioned) ──match──▶ executions, state ──▶ order-matcher.state
 * A component whose orders.components partition is in the slot that split it is matched in the
 * same transaction (still written, marked as applied, and skipped when read back): with one slot,
 * every component; components from other slots or other producers are matched when read.
 */
import {
  connectService,
  envInt,
  kafkaEnv,
  parseEnv,
  runService,
  runStateful,
  serviceEnv,
  TOPICS,
} from '@tradeflow/shared';
import { z } from 'zod';
import { createMatchHandler } from './handler.ts';
import { Matcher } from './matcher.ts';
import { SERVICE_NAME } from './split.ts';

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

  const matching = await runStateful({
    kafka,
    logger: logger.child({ stage: 'match' }),
    metrics,
    groupId: env.GROUP_ID,
    topics: [TOPICS.orders, TOPICS.orderComponents, TOPICS.prices],
    transactionalIdPrefix: `${env.GROUP_ID}-match`,
    changelogTopic: TOPICS.matcherState,
    applyOwnOutputs: TOPICS.orderComponents,
    ...runnerSettings,
    handler: createMatchHandler(matcher, metrics, logger),
  });
  return {
    stop: async () => {
      await matching.stop();
      close();
    },
  };
});
