/**
 * fill-publisher, two exactly-once stages in one process:
 *   executions ──fill──▶ fills (keyed by taxpayer_id), invalid ──▶ executions.dlq
 *   fills ──sum──▶ positions (compacted, keyed by taxpayer_id; also this stage's changelog)
 * The positions live in a SQLite store under FILL_PUBLISHER_STATE_DIR (see store.ts).
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
import { join } from 'node:path';
import { z } from 'zod';
import { createPositionsHandler, fillExecutions, SERVICE_NAME } from './handler.ts';
import { PositionStore } from './store.ts';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    FILL_PUBLISHER_STATE_DIR: z.string().min(1).default(join(process.cwd(), '.local', 'fill-publisher')),
    /** The positions stage's COMMIT_INTERVAL_MS: it is off the order→fill path (see the README). */
    POSITIONS_COMMIT_INTERVAL_MS: envInt(0, 60_000).default(20),
  });
  const store = PositionStore.open(env.FILL_PUBLISHER_STATE_DIR, `${env.GROUP_ID}-positions`);
  if (store.distrusted === undefined) logger.info({ path: store.path }, 'positions store opened');
  else logger.warn({ path: store.path, reason: store.distrusted }, 'positions store opened, but its data is not trusted: every task is restored from its changelog');
  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);

  const filling = await runTransform({
    kafka,
    logger: logger.child({ stage: 'fill' }),
    metrics,
    groupId: `${env.GROUP_ID}-fill`,
    topics: [TOPICS.executions],
    transactionalIdPrefix: `${env.GROUP_ID}-fill`,
    ...runnerSettings,
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
    ...runnerSettings,
    commitIntervalMs: env.POSITIONS_COMMIT_INTERVAL_MS,
    handler: createPositionsHandler(metrics, logger, store),
  });
  return {
    stop: async () => {
      await Promise.all([filling.stop(), positions.stop()]);
      await store.close();
      close();
    },
  };
});
