/**
 * ./scripts/run-local.sh as a user starts it, on a cold, never-used broker and InfluxDB of its own:
 * it starts the broker, InfluxDB, the four services and both feeds, the services all at the same
 * moment while the new broker's coordinators are still loading. Five times in a row every order is
 * filled exactly once; a service SIGKILLed under it comes back; Ctrl-C stops everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKafka, createLogger, decodeMessage, kafkaEnv, parseEnv, PortfolioOrder, TOPICS, type Kafka } from '@tradeflow/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { splitPortfolioOrder } from '../../services/order-matcher/src/split.ts';
import { freePort, REPO, sleep, waitFor } from '../../scripts/lib/processes.ts';
import { expectExactlyOnce, expectPositionsEqualFills, latestPositionsOfAll, readAll, readFills } from './order-checks.ts';

interface RunLocal {
  readonly child: ChildProcess;
  readonly kafka: Kafka;
  readonly ports: { kafka: number; influx: number; portfolio: number };
  output(): string;
  readonly logDir: string;
  readonly exited: Promise<number | null>;
  /** Ctrl-C: SIGINT to its process group, as a terminal sends it. */
  interrupt(): Promise<number | null>;
}

const running = new Set<RunLocal>();
let runs = 0;
const dirs: string[] = [];

afterEach(async (context) => {
  for (const run of running) {
    if (run.child.exitCode === null) await run.interrupt();
  }
  running.clear();
  // A failed run's directory (its broker's and services' logs, the stores) is kept to look into.
  const failed = context.task.result?.state === 'fail';
  for (const dir of dirs.splice(0)) {
    if (failed) process.stderr.write(`run-local test failed: its directory is kept at ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
});

/** A failed wait's error, with the run's output and the end of the log of each service that exited unasked. */
function failure(run: RunLocal, error: unknown): Error {
  const output = run.output();
  const logs = new Set([...output.matchAll(/exited unasked .*\(log: (\S+)\)/g)].map((m) => m[1]!));
  const tails = [...logs].map((log) => (existsSync(log) ? `--- last lines of ${log}\n${readFileSync(log, 'utf8').split('\n').slice(-40).join('\n')}` : ''));
  return new Error([String(error), output.slice(-5_000), ...tails].join('\n'));
}

/** `reuse`: the directory (stores, logs) and API port of an earlier run, as a user's second run has them. */
async function startRunLocal(args: readonly string[], reuse?: { readonly dir: string; readonly portfolio: number }): Promise<RunLocal> {
  const ports = { kafka: await freePort(), controller: await freePort(), influx: await freePort(), rpc: await freePort(), portfolio: reuse?.portfolio ?? (await freePort()) };
  const dir = reuse?.dir ?? mkdtempSync(join(tmpdir(), 'tradeflow-run-local-'));
  if (reuse === undefined) dirs.push(dir);
  // A user's shell: nothing points at a broker or InfluxDB, so run-local.sh starts its own.
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !/^(KAFKA_|INFLUX_)/.test(key)) env[key] = value;
  Object.assign(env, {
    PORTFOLIO_PORT: String(ports.portfolio),
    PORTFOLIO_STORE_DIR: join(dir, 'portfolio'),
    FILL_PUBLISHER_STATE_DIR: join(dir, 'fill-publisher'),
    KAFKA_PORT: String(ports.kafka),
    KAFKA_CONTROLLER_PORT: String(ports.controller),
    INFLUX_PORT: String(ports.influx),
    INFLUX_RPC_PORT: String(ports.rpc),
    TMPDIR: dir,
  });
  // With TEST_LOG_DIR the services' logs are kept there (the run's own directory is removed after it).
  const logDir = process.env['TEST_LOG_DIR'] === undefined ? join(dir, 'logs') : join(process.env['TEST_LOG_DIR'], `run-local-${++runs}`);
  const child = spawn('bash', [join(REPO, 'scripts/run-local.sh'), ...args, '--log-dir', logDir], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const kafka = createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: `127.0.0.1:${ports.kafka}` }), 'run-local-test', createLogger('run-local-test', 'fatal'));
  const run: RunLocal = {
    child,
    kafka,
    ports,
    logDir,
    output: () => output,
    exited,
    interrupt: async () => {
      process.kill(-child.pid!, 'SIGINT');
      return exited;
    },
  };
  running.add(run);
  return run;
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** Waits for the counted order feed to end, then for a fill of each of its component orders. */
async function expectEveryOrderFilledOnce(run: RunLocal, orderCount: number): Promise<void> {
  // Both waits together stay inside the test's timeout, so a run that stalls fails with its output.
  await waitFor('the order feed to finish', async () => (/queue-orders exited \(code 0\)/.test(run.output()) ? true : undefined), 200_000, 500).catch((error: unknown) => {
    throw failure(run, error);
  });
  const orders = (await readAll(run.kafka, TOPICS.orders)).map((r) => decodeMessage(PortfolioOrder, r.value));
  expect(orders.length).toBe(orderCount);
  const expected = new Set<string>();
  for (const order of orders) if (order.ok) for (const component of splitPortfolioOrder(order.value)) expected.add(component.component_order_id);
  const fills = await waitFor(
    'a fill for every component order',
    async () => {
      const all = await readFills(run.kafka);
      return all.length >= expected.size ? all : undefined;
    },
    200_000,
    2_000,
  ).catch((error: unknown) => {
    throw failure(run, error);
  });
  await sleep(2_000);
  const settled = await readFills(run.kafka);
  expect(settled.length).toBe(fills.length);
  expectExactlyOnce(settled, expected);
  const positions = await waitFor('positions to account for every fill', async () => {
    const latest = await latestPositionsOfAll(run.kafka);
    return [...latest.values()].reduce((n, p) => n + p.fills, 0) >= settled.length ? latest : undefined;
  }, 120_000, 2_000).catch((error: unknown) => {
    throw failure(run, error);
  });
  expectPositionsEqualFills(positions, settled);
}

async function expectStoppedCleanly(run: RunLocal): Promise<void> {
  expect(await run.interrupt()).toBe(0);
  for (const service of ['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher', 'portfolio']) expect(run.output()).toContain(`${service}: exited with 0`);
  expect(run.output()).toContain('[kafka] stopped');
  expect(run.output()).toContain('[influx] stopped');
  expect(await portOpen(run.ports.kafka)).toBe(false);
  expect(await portOpen(run.ports.influx)).toBe(false);
}

describe('./scripts/run-local.sh on a cold machine', () => {
  it.each([1, 2, 3, 4, 5])('cold start %i of 5: a never-used broker, every service at once, every order filled exactly once', async () => {
    const run = await startRunLocal(['--order-count', '300', '--order-rate', '100', '--tick-rate', '300']);
    await expectEveryOrderFilledOnce(run, 300);
    // Nothing had to be restarted: the services waited for the broker instead of dying.
    expect(run.output()).not.toContain('exited unasked');
    await expectStoppedCleanly(run);
  }, 480_000);

  it('the terminal closing (SIGHUP to its process group) stops everything it started, as Ctrl-C does', async () => {
    const run = await startRunLocal(['--order-rate', '20', '--tick-rate', '100']);
    // Running, not starting: a process killed while it loads (before it handles signals) is another matter.
    const serving = (service: string) => new RegExp(`${service} +up \\S+ pid \\d+ +restarts +0  consumed`).test(run.output());
    await waitFor('every service to serve', async () => (['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher', 'portfolio'].every(serving) ? true : undefined), 180_000, 500);
    process.kill(-run.child.pid!, 'SIGHUP');
    await run.exited;
    for (const service of ['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher', 'portfolio']) expect(run.output()).toContain(`${service}: exited with 0`);
    expect(run.output()).toContain('[kafka] stopped');
    expect(run.output()).toContain('[influx] stopped');
    expect(await portOpen(run.ports.kafka)).toBe(false);
    expect(await portOpen(run.ports.influx)).toBe(false);
  });

  it('run a second time on the same stores, as a user does (the local broker starts empty every time): only the second run\'s accounts are served', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tradeflow-run-local-'));
    dirs.push(dir);
    const portfolio = await freePort();
    const args = ['--order-count', '200', '--order-rate', '100', '--tick-rate', '300'];
    const account = (run: RunLocal, id: number) => fetch(`http://127.0.0.1:${run.ports.portfolio}/accounts/${id}`, { signal: AbortSignal.timeout(10_000) });
    const served = (run: RunLocal, positions: ReadonlyMap<number, { cash: number }>) =>
      waitFor('the portfolio service to serve every account', async () => {
        for (const [id, position] of positions) {
          const answer = await account(run, id).catch(() => undefined);
          if (answer?.status !== 200 || ((await answer.json()) as { cash: number }).cash !== position.cash) return undefined;
        }
        return true;
      }, 120_000, 2_000);

    const first = await startRunLocal(args, { dir, portfolio });
    await expectEveryOrderFilledOnce(first, 200);
    const before = await latestPositionsOfAll(first.kafka);
    await served(first, before);
    await expectStoppedCleanly(first);

    const second = await startRunLocal(args, { dir, portfolio });
    await expectEveryOrderFilledOnce(second, 200);
    const after = await latestPositionsOfAll(second.kafka);
    await served(second, after);
    const gone = [...before.keys()].filter((id) => !after.has(id));
    expect(gone.length).toBeGreaterThan(0);
    for (const id of gone) expect((await account(second, id)).status, `account ${id} of the first run only`).toBe(404);
    expect(readFileSync(join(second.logDir, 'portfolio.log'), 'utf8')).toContain('the store is not of these topics (it was kept for Kafka cluster');
    await expectStoppedCleanly(second);
  }, 600_000);

  it('a service SIGKILLed under run-local is started again, its restart shown, and no order is lost or filled twice', async () => {
    const run = await startRunLocal(['--order-count', '1500', '--order-rate', '100', '--tick-rate', '300']);
    const started = await waitFor('order-matcher to run', async () => /order-matcher started \(pid (\d+)\)/.exec(run.output())?.[1], 120_000, 200);
    await waitFor('the first fills', async () => ((await readAll(run.kafka, TOPICS.fills).catch(() => [])).length > 100 ? true : undefined), 120_000, 1_000);
    process.kill(Number(started), 'SIGKILL');
    await waitFor('the restart', async () => (/order-matcher exited unasked \(SIGKILL\); starting it again in 1 s/.test(run.output()) ? true : undefined), 60_000, 200);
    const again = await waitFor('order-matcher to run again', async () => [...run.output().matchAll(/order-matcher started \(pid (\d+)\)/g)][1]?.[1], 60_000, 200);
    expect(again).not.toBe(started);
    await waitFor('the status line to show the restart', async () => (/order-matcher +up \S+ pid \d+ +restarts +1 +last exit SIGKILL/.test(run.output()) ? true : undefined), 60_000, 500);
    await expectEveryOrderFilledOnce(run, 1500);
    await expectStoppedCleanly(run);
  }, 480_000);
});
