/**
 * influx-writer: prices, orders, executions, fills, dead letters ──▶ InfluxDB (bid_ask,
 * portfolio_orders, executions, fills, dead_letters). One /write per consumed batch; offsets are
 * committed only after InfluxDB acknowledged it. InfluxDB down: the batch waits and is retried with
 * capped backoff, nothing is committed meanwhile. Points InfluxDB refuses for good (a field type
 * conflict) ──▶ influx.dlq with its reason; the rest of their batch is written.
 */
import {
  connectService,
  deadLetter,
  envInt,
  influxEnv,
  InfluxClient,
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
/** On influx.dlq: the line protocol InfluxDB refused. */
const INFLUX_LINE_HEADER = 'dlq.influx.line';

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
  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);
  metrics.healthy = false;
  const database = await untilSuccess(`checking InfluxDB database ${env.INFLUX_DB}`, logger, () => influx.ensureDatabase(), env.RETRY_MAX_MS);
  metrics.healthy = true;
  logger.info({ url: env.INFLUX_URL, database: env.INFLUX_DB, user: env.INFLUX_USERNAME }, database === 'created' ? 'InfluxDB database ready' : 'InfluxDB database exists (this user may not create databases, and need not)');

  const consumer = await runSink({
    kafka,
    logger,
    metrics,
    groupId: env.GROUP_ID,
    topics: env.INFLUX_TOPICS,
    ...runnerSettings,
    write: async (records, source) => {
      const { lines, records: sources, rejected } = encodeBatch(records);
      if (rejected.length > 0) {
        // Undecodable records were dead-lettered by the stage that validates their topic.
        metrics.rejected += rejected.length;
        logger.warn({ ...source, count: rejected.length, first: rejected[0] }, 'skipped records that cannot be written');
      }
      const refused = await influx.writeEach(lines.map((_, i) => i), (i) => lines[i]!);
      metrics.written += lines.length - refused.length;
      if (refused.length === 0) return;
      metrics.rejected += refused.length;
      logger.warn({ ...source, refused: refused.length, points: lines.length, first: refused[0]!.reason }, `InfluxDB refused points for good; they go to ${TOPICS.influxDlq}, the rest are written`);
      return refused.map(({ item, line, reason }) => {
        const letter = deadLetter(sources[item]!, TOPICS.influxDlq, reason, SERVICE_NAME);
        return { ...letter, headers: { ...letter.headers, [INFLUX_LINE_HEADER]: line } };
      });
    },
  });
  return {
    stop: async () => {
      await consumer.stop();
      close();
    },
  };
});
