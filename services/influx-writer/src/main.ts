/**
 * influx-writer: prices, orders, executions, fills ──▶ InfluxDB (bid_ask, portfolio_orders,
 * executions, fills). One /write per consumed batch; offsets
 * are committed only after InfluxDB acknowledged it. InfluxDB down: the batch waits and is retried
 * with capped backoff, nothing is committed meanwhile.
 */
import {
  connectService,
  envInt,
  influxEnv,
  InfluxClient,
  InfluxError,
  kafkaEnv,
  parseEnv,
  runService,
  runSink,
  serviceEnv,
  TOPICS,
  untilSuccess,
} from '@tradeflow/shared';
import { z } from 'zod';
import { encodeBatch, ENCODERS } from './points.ts';

const SERVICE_NAME = 'influx-writer';

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...influxEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    INFLUX_GZIP_LEVEL: envInt(0, 9).default(1),
    INFLUX_TOPICS: z
      .string()
      .default(Object.keys(ENCODERS).join(','))
      .transform((s) => s.split(',').map((t) => t.trim()).filter((t) => t.length > 0))
      .pipe(z.array(z.enum(Object.keys(ENCODERS) as [string, ...string[]], { error: `must list topics among: ${Object.keys(ENCODERS).join(', ')}` })).min(1)),
  });
  const influx = new InfluxClient({
    url: env.INFLUX_URL,
    database: env.INFLUX_DB,
    username: env.INFLUX_USERNAME,
    password: env.INFLUX_PASSWORD,
    gzipLevel: env.INFLUX_GZIP_LEVEL,
  });
  await untilSuccess(`creating InfluxDB database ${env.INFLUX_DB}`, logger, () => influx.createDatabase(), env.RETRY_MAX_MS);
  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);

  const consumer = await runSink({
    kafka,
    logger,
    metrics,
    groupId: env.GROUP_ID,
    topics: env.INFLUX_TOPICS,
    ...runnerSettings,
    write: async (records, source) => {
      const { lines, rejected } = encodeBatch(records);
      if (rejected.length > 0) {
        metrics.rejected += rejected.length;
        logger.warn({ ...source, count: rejected.length, first: rejected[0] }, 'skipped records that cannot be written');
      }
      try {
        await influx.write(lines);
        metrics.written += lines.length;
      } catch (error) {
        if (error instanceof InfluxError && !error.retriable) {
          metrics.rejected += lines.length;
          logger.error({ ...source, err: error, points: lines.length }, 'InfluxDB refused the batch; it cannot succeed on retry, moving on');
          return;
        }
        throw error;
      }
    },
  });
  return {
    stop: async () => {
      await consumer.stop();
      close();
    },
  };
});
