/**
 * tick-deserializer: ticks ──▶ validate ──▶ prices (keyed by symbol), invalid ──▶ ticks.dlq.
 * Exactly once: outputs and input offsets are committed in one Kafka transaction per batch.
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
    handle: (records) => deserializeTicks(records, env.MAX_TICK_BYTES),
  });
  return {
    stop: async () => {
      await consumer.stop();
      close();
    },
  };
});
