/**
 * The stack as docker-compose.yml defines it, run without a Docker engine: every container that can
 * run on this machine, with exactly the environment compose gives it from .env (see
 * scripts/lib/compose). Kafka is configured by the apache/kafka image's own KafkaDockerWrapper over
 * compose's KAFKA_* variables, InfluxDB's users are made as the influxdb image's first start makes
 * them, and each container has a network namespace of its own where compose's host names resolve.
 * Grafana and Kafka UI cannot run here: their provisioning is checked statically (test/checks), and
 * Grafana's datasource is used here as Grafana would use it, after its own ${VAR} interpolation.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKafka, createLogger, decodeMessage, InfluxClient, kafkaEnv, parseEnv, PortfolioOrder, TOPICS, type Kafka } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { splitPortfolioOrder } from '../../services/order-matcher/src/split.ts';
import { grafanaInterpolate } from '../../scripts/lib/compose/interpolate.ts';
import { networkUnavailable } from '../../scripts/lib/compose/network.ts';
import { loadProject, type ComposeProject } from '../../scripts/lib/compose/project.ts';
import { nodeOptionsFor } from '../../scripts/lib/node-options.ts';
import { Stack } from '../../scripts/lib/compose/stack.ts';
import type { Toolchain } from '../../scripts/lib/compose/images.ts';
import { freePort, REPO, sleep, waitFor } from '../../scripts/lib/processes.ts';
import { panelQueries, substituteMacros } from '../checks/dashboards.ts';
import { runInfraScript } from './infra.ts';
import { expectExactlyOnce, expectPositionsEqualFills, positionsAccountingFor, readAll, readFills } from './order-checks.ts';

const COMPOSE_FILE = join(REPO, 'docker-compose.yml');
const workDir = mkdtempSync(join(tmpdir(), 'tradeflow-compose-'));
let toolchain: Toolchain;
const stacks: Stack[] = [];

/** .env.example with these values put in, single-quoted as .env.example tells users to (a ' as \'). */
function envFile(name: string, values: Record<string, string>): string {
  let text = readFileSync(join(REPO, '.env.example'), 'utf8');
  for (const [key, value] of Object.entries(values)) {
    const line = `${key}='${value.replace(/'/g, "\\'")}'`;
    const pattern = new RegExp(`^${key}=.*$`, 'm');
    text = pattern.test(text) ? text.replace(pattern, () => line) : `${text}\n${line}\n`;
  }
  const path = join(workDir, name);
  writeFileSync(path, text);
  return path;
}

const stackOf = (project: ComposeProject, options: { profiles?: string[]; services?: string[] } = {}) => {
  const stack = new Stack({
    project,
    ...options,
    workDir,
    repo: REPO,
    toolchain,
    id: randomBytes(2).toString('hex').slice(0, 3),
    waitTimeoutMs: 240_000,
    log: (line) => process.stderr.write(`[compose] ${line}\n`),
  });
  stacks.push(stack);
  return stack;
};

beforeAll(async () => {
  const unavailable = await networkUnavailable();
  if (unavailable !== undefined) throw new Error(`the compose parity run cannot run here: ${unavailable}`);
  const kafkaClasspath = await runInfraScript('kafka', 'classpath');
  const influxd = await runInfraScript('influx', 'build');
  toolchain = { kafkaClasspath, influxd, influx: join(influxd, '../influx'), node: process.execPath };
});

afterAll(async () => {
  for (const stack of stacks) await stack.down();
  rmSync(workDir, { recursive: true, force: true });
});

describe('docker-compose.yml, run as compose runs it', () => {
  it('.env.example copied as it is: compose refuses to start and names the passwords to set', () => {
    expect(() => loadProject(COMPOSE_FILE, { envFile: join(REPO, '.env.example'), shell: {} })).toThrow(
      /required variable (INFLUX_ADMIN_PASSWORD|INFLUX_PASSWORD|GRAFANA_ADMIN_PASSWORD) is missing a value: set \1 in \.env \(see \.env\.example\)/,
    );
  });

  it("a password the influxdb image's first start cannot take is refused before InfluxDB starts, naming the variable", async () => {
    const project = loadProject(COMPOSE_FILE, {
      envFile: envFile('refused.env', { INFLUX_ADMIN_PASSWORD: "it's", INFLUX_PASSWORD: 'fine', GRAFANA_ADMIN_PASSWORD: 'fine' }),
      shell: {},
    });
    const stack = stackOf(project, { services: ['influxdb'] });
    await expect(stack.up()).rejects.toThrow(/service "check-settings" didn't complete successfully[\s\S]*INFLUX_ADMIN_PASSWORD contains ' or \\/);
    expect(stack.containers.has('influxdb')).toBe(false);
    await stack.down();
  });

  it('the whole stack with a live feed: every Grafana panel returns rows, every order is filled once, positions equal fills and the portfolio service shows them, Kafka keeps its data in its volume', async () => {
    const ports = { KAFKA_HOST_PORT: await freePort(), INFLUX_HOST_PORT: await freePort(), GRAFANA_HOST_PORT: await freePort(), KAFKA_UI_HOST_PORT: await freePort(), PORTFOLIO_HOST_PORT: await freePort() };
    // Passwords with what .env files and the images make hard: $, #, spaces, quotes, a backtick.
    const secrets = { INFLUX_PASSWORD: 'pa$s #w0rd "x" `y` z', INFLUX_ADMIN_PASSWORD: 'adm$n#pw`"1', GRAFANA_ADMIN_PASSWORD: "gr$f #a'na \\ x" };
    const file = envFile('stack.env', { ...secrets, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])), SEED_TICK_RATE: '400', SEED_ORDER_RATE: '40' });
    const project = loadProject(COMPOSE_FILE, { envFile: file, shell: {} });
    expect(project.services.get('influx-writer')!.environment['INFLUX_PASSWORD']).toBe(secrets.INFLUX_PASSWORD);
    expect(project.services.get('grafana')!.environment['GF_SECURITY_ADMIN_PASSWORD']).toBe(secrets.GRAFANA_ADMIN_PASSWORD);
    // The heap bounds run-local and the tests start the services with.
    for (const service of ['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher', 'portfolio']) {
      expect(project.services.get(service)!.environment['NODE_OPTIONS'], service).toBe(nodeOptionsFor(service, {}));
    }

    const stack = stackOf(project, { profiles: ['seed'] });
    await stack.up();
    expect([...stack.notRun.keys()].sort()).toEqual(['grafana', 'kafka-ui']);
    // One-shot jobs have no health check in force (the image's would probe a /health they never serve).
    for (const container of stack.containers.values()) {
      if (container.service.restart === 'no') expect(stack.healthcheckOf(container.service, container.emulation), container.service.name).toBeUndefined();
    }

    // From the host, through the published ports, as a user reaches them.
    const kafka: Kafka = createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: `localhost:${ports.KAFKA_HOST_PORT}` }), 'parity-test', createLogger('parity-test', 'error'));
    // Dead letters for the DLQ panel: a feed sending what is not a tick.
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: TOPICS.ticks, acks: -1, messages: Array.from({ length: 20 }, (_, i) => ({ key: 'IVE', value: `{"symbol":"IVE","bid":${i}` })) });
    await producer.disconnect();

    // Grafana's datasource as Grafana reads it: its file, interpolated with Grafana's environment.
    const grafanaEnv = project.services.get('grafana')!.environment;
    const datasource = (parse(readFileSync(join(REPO, 'grafana/provisioning/datasources/influxdb.yml'), 'utf8')) as { datasources: { url: string; user: string; jsonData: { dbName: string }; secureJsonData: { password: string } }[] }).datasources[0]!;
    const lookup = (name: string) => grafanaEnv[name];
    expect(datasource.url).toBe('http://influxdb:8086');
    const grafanaInflux = new InfluxClient({
      url: `http://127.0.0.1:${ports.INFLUX_HOST_PORT}`,
      database: grafanaInterpolate(datasource.jsonData.dbName, lookup),
      username: grafanaInterpolate(datasource.user, lookup),
      password: grafanaInterpolate(datasource.secureJsonData.password, lookup),
    });
    const queries = panelQueries();
    const emptyPanels = async () => {
      const empty: string[] = [];
      for (const q of queries) {
        const series = await grafanaInflux.query(substituteMacros(q.query, 'IVE'));
        const values = series.flatMap((s) => s.values.flatMap((row) => row.slice(1)));
        if (!values.some((v) => v !== null && v !== 0)) empty.push(`${q.dashboard}: ${q.panel}`);
      }
      return empty;
    };
    let lastEmpty: string[] = [];
    await waitFor(
      'every panel query to return rows',
      async () => {
        lastEmpty = await emptyPanels();
        return lastEmpty.length === 0 ? true : undefined;
      },
      240_000,
      5_000,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; still empty: ${lastEmpty.join(', ')}\n${stack.containers.get('influx-writer')?.output().slice(-3_000)}`);
    });
    expect(stack.unexpectedExits()).toEqual([]);

    // The order feed stops (prices go on: an order waits for a fresh one, and priority-2 windows
    // close as they flow); every order it sent is filled exactly once and positions equal the fills.
    await stack.stop('queue-orders');
    const orders = (await readAll(kafka, TOPICS.orders)).map((r) => decodeMessage(PortfolioOrder, r.value));
    expect(orders.length, `orders in the topic; the feed said:\n${stack.containers.get('queue-orders')?.output().slice(-3_000)}`).toBeGreaterThan(100);
    const expected = new Set<string>();
    for (const order of orders) if (order.ok) for (const component of splitPortfolioOrder(order.value)) expected.add(component.component_order_id);
    const fills = await waitFor(
      'a fill for every component order',
      async () => {
        const all = await readFills(kafka);
        return all.length >= expected.size ? all : undefined;
      },
      180_000,
      2_000,
    );
    await sleep(2_000);
    expectExactlyOnce(fills, expected);
    const positions = await positionsAccountingFor(kafka, fills.length, 120_000);
    expectPositionsEqualFills(positions, fills);
    // The portfolio service, through its published port, answers for every account as positions say.
    await waitFor('the portfolio service to show every account', async () => {
      for (const [taxpayer, position] of positions) {
        const res = await fetch(`http://127.0.0.1:${ports.PORTFOLIO_HOST_PORT}/accounts/${taxpayer}`, { signal: AbortSignal.timeout(10_000) });
        if (res.status !== 200 || ((await res.json()) as { fills: number }).fills !== position.fills) return undefined;
      }
      return true;
    }, 120_000, 2_000);
    expect(stack.unexpectedExits()).toEqual([]);
    await stack.stop('queue-ticks');

    // down, then up again: the broker's data is in its volume, so topics and offsets survive.
    const admin = kafka.admin();
    await admin.connect();
    const endOffsets = async () => (await admin.fetchTopicOffsets(TOPICS.orders)).map((p) => `${p.partition}:${p.high}`).sort();
    const committed = async () => (await admin.fetchOffsets({ groupId: 'order-matcher', topics: [TOPICS.orders] }))[0]!.partitions.map((p) => `${p.partition}:${p.offset}`).sort();
    const before = { ends: await endOffsets(), committed: await committed() };
    await admin.disconnect();
    expect(before.committed.some((o) => !o.endsWith(':-1'))).toBe(true);
    await stack.down();

    const again = stackOf(project, { services: ['kafka'] });
    await again.up();
    await again.waitHealthy('kafka');
    await admin.connect();
    const after = await waitFor('the offsets after the restart', async () => ({ ends: await endOffsets(), committed: await committed() }), 120_000, 1_000);
    expect(after).toEqual(before);
    await admin.disconnect();
    await again.down();
  });
});
