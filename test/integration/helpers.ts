/** Real processes, a real broker and a real InfluxDB for the integration suite. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import {
  createKafka,
  createLogger,
  ensureTopics,
  InfluxClient,
  kafkaEnv,
  parseEnv,
  topicDefinitions,
  TOPICS,
  type Kafka,
  type MetricsSnapshot,
} from '@tradeflow/shared';
import { inject } from 'vitest';
import { REPO } from './infra.ts';

export const brokers = () => inject('kafkaBrokers');
export const influxUrl = () => inject('influxUrl');
export const infraMode = () => inject('infraMode');

const quietLogger = createLogger('integration-test', 'error');

export function testKafka(): Kafka {
  return createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: brokers() }), 'integration-test', quietLogger);
}

export const uniqueName = (prefix: string) => `${prefix}_${randomUUID().slice(0, 8)}`;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
}

/** Deletes every topic of the system and creates them again, empty. */
export async function resetTopics(kafka: Kafka, partitions = 6): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names: string[] = Object.values(TOPICS);
    const existing = (await admin.listTopics()).filter((t) => names.includes(t));
    if (existing.length > 0) await admin.deleteTopics({ topics: existing, timeout: 30_000 });
    await waitFor('topic deletion', async () => ((await admin.listTopics()).some((t) => names.includes(t)) ? undefined : true), 60_000);
  } finally {
    await admin.disconnect();
  }
  await waitFor('topic creation', async () => {
    await ensureTopics(kafka, topicDefinitions(partitions), quietLogger);
    return true;
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  metrics(): Promise<MetricsSnapshot>;
  output(): string;
  /** Sends the signal and resolves with the exit code and how long the exit took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

const running = new Set<ServiceProcess>();

export async function startService(name: string, env: Record<string, string>): Promise<ServiceProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [`${REPO}/services/${name}/src/main.ts`], {
    env: {
      PATH: process.env['PATH'] ?? '',
      KAFKA_BROKERS: brokers(),
      INFLUX_URL: influxUrl(),
      LOG_LEVEL: 'info',
      RETRY_MAX_MS: '1000',
      METRICS_PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const service: ServiceProcess = {
    name,
    child,
    exited,
    output: () => output,
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      return (await res.json()) as MetricsSnapshot;
    },
    stop: async (signal = 'SIGTERM') => {
      const started = Date.now();
      child.kill(signal);
      const result = await exited;
      running.delete(service);
      return { ...result, ms: Date.now() - started };
    },
  };
  running.add(service);
  void exited.then(() => running.delete(service));
  await waitFor(`${name} to serve /metrics`, async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${output}`);
    return (await service.metrics()).service === name ? true : undefined;
  }, 60_000);
  return service;
}

/** Kills whatever a test left running (by the child's own pid). */
export async function stopAllServices(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop('SIGKILL')));
}

/** Runs a script of scripts/ as a real process and resolves with its stderr when it exits 0. */
export async function runScript(script: string, args: readonly string[]): Promise<string> {
  const child = spawn(process.execPath, [`${REPO}/scripts/${script}`, ...args], {
    env: { ...process.env, KAFKA_BROKERS: brokers(), LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}:\n${stderr}`);
  return stderr;
}

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

export function influxFor(database: string): InfluxClient {
  return new InfluxClient({ url: influxUrl(), database });
}

/** Number of points of a measurement (counting a field every point has). */
export async function countPoints(influx: InfluxClient, measurement: string, field: string): Promise<number> {
  const series = await influx.query(`SELECT count("${field}") FROM "${measurement}"`);
  return Number(series[0]?.values[0]?.[1] ?? 0);
}
