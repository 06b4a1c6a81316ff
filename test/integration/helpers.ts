/** Real processes, a real broker and a real InfluxDB for the integration suite. */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  createKafka,
  createLogger,
  InfluxClient,
  kafkaEnv,
  quoteIdentifier,
  parseEnv,
  type Kafka,
} from '@tradeflow/shared';
import { inject } from 'vitest';
import { resetTopics as resetAllTopics } from '../../scripts/lib/admin.ts';
import { REPO } from './infra.ts';
import {
  runScript as runScriptProcess,
  sleep,
  startService as startServiceProcess,
  stopScripts,
  waitFor,
  type ServiceProcess,
} from '../../scripts/lib/processes.ts';

export { sleep, waitFor, type ServiceProcess };

export const brokers = () => inject('kafkaBrokers');
export const influxUrl = () => inject('influxUrl');
export const infraMode = () => inject('infraMode');
export const influxCredentials = () => inject('influxCredentials');

const quietLogger = createLogger('integration-test', 'error');

export function testKafka(env: Record<string, string> = {}): Kafka {
  return createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: brokers(), ...env }), 'integration-test', quietLogger);
}

export const uniqueName = (prefix: string) => `${prefix}_${randomUUID().slice(0, 8)}`;

export const resetTopics = (kafka: Kafka) => resetAllTopics(kafka, quietLogger);

/** fill-publisher's position stores: one directory per group under this one, emptied when the suite starts. */
export const STATE_DIR = join(REPO, '.local', 'integration-state');

const running = new Set<ServiceProcess>();
/** Every service started since the last stopAllServices, with how it ended: what a failed test describes. */
const startedInTest: { service: ServiceProcess; exit?: string }[] = [];
let started = 0;

export async function startService(name: string, env: Record<string, string>): Promise<ServiceProcess> {
  const logDir = process.env['TEST_LOG_DIR'];
  const service = await startServiceProcess(name, {
    env: {
      KAFKA_BROKERS: brokers(),
      INFLUX_URL: influxUrl(),
      INFLUX_USERNAME: influxCredentials().username,
      INFLUX_PASSWORD: influxCredentials().password,
      LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'info',
      RETRY_MAX_MS: '1000',
      FILL_PUBLISHER_STATE_DIR: STATE_DIR,
      // A whole file's services with other settings: TEST_SERVICE_ENV='TRANSACTION_STREAM_MS=200 TRANSACTION_MAX_RECORDS=500'.
      ...Object.fromEntries((process.env['TEST_SERVICE_ENV'] ?? '').split(/\s+/).filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
      ...env,
    },
    ...(logDir === undefined ? {} : { logFile: `${logDir}/${name}-${++started}.log` }),
  });
  running.add(service);
  const entry: (typeof startedInTest)[number] = { service };
  startedInTest.push(entry);
  void service.exited.then(({ code, signal }) => {
    running.delete(service);
    entry.exit = `exited ${signal ?? `code ${code}`} at ${new Date().toISOString().slice(11, 23)}`;
  });
  return service;
}

/** One line per field of a service's log line worth reading in a failure (its level, time, message, error). */
function logLineSummary(line: string): string | undefined {
  try {
    const entry = JSON.parse(line) as { level?: string; time?: string; msg?: string; err?: { message?: string }; error?: string };
    if (entry.level !== 'warn' && entry.level !== 'error' && entry.level !== 'fatal') return undefined;
    const reason = entry.err?.message ?? entry.error;
    return `${entry.time?.slice(11, 23) ?? ''} ${entry.level} ${entry.msg ?? ''}${reason === undefined || entry.msg?.includes(reason) ? '' : `: ${reason}`}`.slice(0, 240);
  } catch {
    return undefined;
  }
}

/**
 * What every service the test started is doing: its counters, lag and assignments from /metrics
 * (or how it ended), and its last warnings and errors. A failed wait says which step stalled; this
 * says where the records stopped.
 */
export async function describeServices(): Promise<string> {
  const lines: string[] = [];
  for (const { service, exit } of startedInTest) {
    const pid = service.child.pid ?? '?';
    let state: string;
    if (exit !== undefined) state = exit;
    else {
      const m = await service.metrics().catch((error: unknown) => `no /metrics: ${String(error)}`);
      if (typeof m === 'string') state = m;
      else {
        const lagging = Object.entries(m.lagByPartition).filter(([, lag]) => lag > 0).map(([partition, lag]) => `${partition}=${lag}`);
        const assigned = Object.entries(m.extra).filter(([key]) => key.startsWith('assigned:')).map(([key, n]) => `${key.slice(9)}=${n}`);
        state = `up ${Math.round(m.uptimeSeconds)} s, ${m.healthy ? 'healthy' : 'NOT healthy'}, consumed ${m.consumed}, produced ${m.produced}, written ${m.written}, dlq ${m.dlq}, retries ${m.retries}, lag ${m.lag}${lagging.length > 0 ? ` (${lagging.slice(0, 12).join(' ')})` : ''}, assigned ${assigned.join(' ') || 'none'}`;
      }
    }
    const warnings = service.output().split('\n').map(logLineSummary).filter((l) => l !== undefined);
    lines.push(`${service.name} pid ${pid}: ${state}`);
    for (const w of warnings.slice(-6)) lines.push(`    ${w}`);
    if (warnings.length > 6) lines.push(`    (${warnings.length - 6} earlier warnings or errors)`);
  }
  return lines.length === 0 ? 'no services started' : lines.join('\n');
}

/**
 * Wraps a test's body so that a failure carries describeServices(): CI shows the failed tests'
 * messages, not the services' logs. Give the test a timeout above the sum of its own waits, so
 * that a wait fails (naming its step) before the test's timeout does.
 */
export function diagnosed(body: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body();
    } catch (error) {
      const description = await describeServices().catch((e: unknown) => `(services not described: ${String(e)})`);
      if (error instanceof Error) {
        error.message = `${error.message}\n--- services at the failure ---\n${description}`;
        throw error;
      }
      throw new Error(`${String(error)}\n--- services at the failure ---\n${description}`);
    }
  };
}

/** Kills whatever a test left running (by the child's own pid): services, and feeds still sending. */
export async function stopAllServices(): Promise<void> {
  stopScripts();
  await Promise.all([...running].map((s) => s.stop('SIGKILL')));
  startedInTest.length = 0;
}

export const runScript = (script: string, args: readonly string[]) => runScriptProcess(script, args, { KAFKA_BROKERS: brokers(), LOG_LEVEL: 'error' });

export interface TopicRecord {
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: Buffer;
  readonly headers: Record<string, string>;
}

/** Reads a topic from the beginning (committed records only) until `count` records arrived. */
export async function readTopic(kafka: Kafka, topic: string, count: number, timeoutMs = 60_000): Promise<TopicRecord[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 100 });
  const records: TopicRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = v.toString();
          records.push({ partition: batch.partition, offset: m.offset, key: m.key?.toString() ?? null, value: m.value ?? Buffer.alloc(0), headers });
        }
        if (records.length >= count) resolveDone();
      },
    });
    if (count === 0) await sleep(2_000);
    else await Promise.race([done, sleep(timeoutMs)]);
    // linger briefly so that records beyond the expected count (duplicates) are seen too
    await sleep(1_000);
    return records;
  } finally {
    await consumer.disconnect();
  }
}

/** A client of `database` as InfluxDB's admin (tests read what the services wrote with it). */
export function influxFor(database: string): InfluxClient {
  const { adminUser, adminPassword } = influxCredentials();
  return new InfluxClient({ url: influxUrl(), database, username: adminUser, password: adminPassword });
}

/**
 * Creates `database` and gives the services' user (which, as in compose, may not create databases)
 * all rights on it, as an admin would. Returns the client to read it with.
 */
export async function influxDatabase(database: string): Promise<InfluxClient> {
  const influx = influxFor(database);
  await influx.createDatabase();
  await influx.execute(`GRANT ALL ON ${quoteIdentifier(database)} TO ${quoteIdentifier(influxCredentials().username)}`);
  return influx;
}

/** Number of points of a measurement (counting a field every point has). */
export async function countPoints(influx: InfluxClient, measurement: string, field: string): Promise<number> {
  const series = await influx.query(`SELECT count("${field}") FROM "${measurement}"`);
  return Number(series[0]?.values[0]?.[1] ?? 0);
}
