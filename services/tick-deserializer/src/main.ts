/**
 * tick-deserializer: ticks ──▶ validate ──▶ prices (keyed by symbol), invalid ──▶ ticks.dlq.
 * Exactly once: outputs and input offsets are committed in one Kafka transaction per batch.
 * Its transactions start at most every PRICE_COMMIT_INTERVAL_MS (100 ms, not COMMIT_INTERVAL_MS):
 * each costs the broker about the same CPU whatever it carries, prices flow all the time, and the
 * order-matcher executes on the newest price it has (an order waits only while that is missing or
 * more than MAX_PRICE_AGE_MS, 5 s, older than the order): prices up to 100 ms later delay no order
 * that has a fresh one, though the price it gets may be up to 100 ms older.
 */
import {
  connectService,
  envInt,
  kafkaEnv,
  parseEnv,
  runService,
  runTransform,
  serviceEnv,
  TOPICS,
} from '@tradeflow/shared';
import { z } from 'zod';
import { deserializeTicks, SERVICE_NAME } from './deserialize.ts';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    MAX_TICK_BYTES: envInt(64, 1_048_576).default(4_096),
    PRICE_COMMIT_INTERVAL_MS: envInt(0, 60_000).default(100),
  });
  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);
  const consumer = await runTransform({
    kafka,
    logger,
    metrics,
    groupId: env.GROUP_ID,
    topics: [TOPICS.ticks],
    transactionalIdPrefix: env.GROUP_ID,
    ...runnerSettings,
    commitIntervalMs: env.PRICE_COMMIT_INTERVAL_MS,
    handle: (records) => deserializeTicks(records, env.MAX_TICK_BYTES),
  });
  return {
    stop: async () => {
      await consumer.stop();
      close();
    },
  };
});
