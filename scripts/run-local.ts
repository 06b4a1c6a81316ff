/**
 * Runs the pipeline's services, a live tick feed and a live order feed against the broker and
 * InfluxDB named by KAFKA_BROKERS / INFLUX_URL, all started at once, and keeps them running: a
 * process that exits unasked is started again with a backoff. Shows one status block (redrawn in
 * place on a terminal, printed every few seconds otherwise) until Ctrl-C, then stops what it
 * started (SIGTERM, by pid). scripts/run-local.sh wraps this with a local broker and InfluxDB.
 *   --tick-rate N      ticks a second (2000)
 *   --order-rate N     portfolio orders a second (200)
 *   --order-count N    stop the order feed after N orders (default: no end)
 *   --log-dir DIR      service and feed logs (.local/logs)
 */
import { mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { MetricsSnapshot } from '@tradeflow/shared';
import { freePort, REPO, reservePorts, sleep } from './lib/processes.ts';
import { serviceNodeEnv } from './lib/node-options.ts';
import { statusBlock } from './lib/status.ts';
import { Supervisor, type Supervised } from './lib/supervisor.ts';

const { values } = parseArgs({
  options: {
    'tick-rate': { type: 'string', default: '2000' },
    'order-rate': { type: 'string', default: '200' },
    'order-count': { type: 'string' },
    'log-dir': { type: 'string', default: `${REPO}/.local/logs` },
  },
});
const positive = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`run-local: --${name} must be a positive whole number, got ${value}\n`);
    process.exit(2);
  }
  return n;
};
const tickRate = positive('tick-rate', values['tick-rate'])!;
const orderRate = positive('order-rate', values['order-rate'])!;
const orderCount = positive('order-count', values['order-count']);
const logDir = String(values['log-dir']);
mkdirSync(logDir, { recursive: true });

const SERVICES = ['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher', 'portfolio'] as const;
const env: Record<string, string> = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
const portfolioPort = env['PORTFOLIO_PORT'] ?? '8090';
// The metrics ports are picked here; none may be one that a process not yet listening was given.
reservePorts(portfolioPort, env['KAFKA_PORT'], env['KAFKA_CONTROLLER_PORT'], env['INFLUX_PORT'], env['INFLUX_RPC_PORT']);
const tty = process.stdout.isTTY === true;

/** On a terminal, events go into the block (redrawn); otherwise they are printed as they happen. */
const events: string[] = [];
const say = (line: string) => {
  const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`;
  if (tty) {
    events.push(stamped);
    if (events.length > 5) events.shift();
  } else process.stdout.write(`${stamped}\n`);
};
const supervisor = new Supervisor(say);

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\nstopping the feeds and the services...\n');
  for (const { name, exit } of await supervisor.stopAll()) {
    process.stdout.write(`${name}: ${exit === undefined ? 'not running' : `exited with ${exit.signal ?? exit.code}`}\n`);
  }
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
// The terminal closed: stop as for Ctrl-C; what is printed then goes nowhere.
process.on('SIGHUP', () => void shutdown());
process.stdout.on('error', () => undefined);

// Everything at once, as a machine that boots starts it: the services wait for the broker and
// InfluxDB themselves.
const node = process.execPath;
for (const name of SERVICES) {
  const metricsPort = await freePort();
  supervisor.start({
    name,
    argv: [node, `${REPO}/services/${name}/src/main.ts`],
    // Its heap bounds (scripts/lib/node-options.ts), as compose gives them.
    env: { ...env, METRICS_PORT: String(metricsPort), METRICS_HOST: '127.0.0.1', PORTFOLIO_PORT: portfolioPort, ...serviceNodeEnv(name, env) },
    logFile: `${logDir}/${name}.log`,
    metricsPort,
    restartOn: () => true,
  });
}
const feed = (script: string, args: readonly string[]) => [node, `${REPO}/scripts/${script}.ts`, ...args];
supervisor.start({
  name: 'queue-ticks',
  argv: feed('queue-ticks', ['--count', '1000000000', '--rate', String(tickRate)]),
  env,
  logFile: `${logDir}/queue-ticks.log`,
  restartOn: (code) => code !== 0,
});
const orderArgs = (seed: number) => ['--count', String(orderCount ?? 1_000_000_000), '--rate', String(orderRate), '--seed', String(seed)];
supervisor.start({
  name: 'queue-orders',
  argv: feed('queue-orders', orderArgs(Date.now() % 100_000)),
  env,
  logFile: `${logDir}/queue-orders.log`,
  // A counted feed started again would send its orders twice: it is left as it ended.
  restartOn: (code) => code !== 0 && orderCount === undefined,
  argvForRestart: (restart) => feed('queue-orders', orderArgs((Date.now() + restart) % 100_000)),
});

const header = [
  `tradeflow, local run: Kafka ${env['KAFKA_BROKERS'] ?? '127.0.0.1:9092'}, InfluxDB ${env['INFLUX_URL'] ?? 'http://127.0.0.1:8086'} (database ${env['INFLUX_DB'] ?? 'tradeflow'})`,
  `portfolio page and API: http://127.0.0.1:${portfolioPort}/ (/accounts/{taxpayer_id}, /fills, /events)`,
  `feeds: ${tickRate.toLocaleString('en-US')} ticks/s, ${orderRate.toLocaleString('en-US')} orders/s${orderCount === undefined ? '' : ` until ${orderCount.toLocaleString('en-US')} orders`}; logs in ${logDir}; Ctrl-C stops everything`,
];
if (!tty) process.stdout.write(`${header.join('\n')}\n`);

let previous = new Map<string, MetricsSnapshot>();
let lastAt = Date.now();
let drawnLines = 0;
let lastPrinted = 0;
while (!stopping) {
  await sleep(1_000);
  const now = Date.now();
  const current = new Map<string, MetricsSnapshot>();
  await Promise.all(
    supervisor.processes.map(async (p: Supervised) => {
      const m = await p.metrics();
      if (m !== undefined) current.set(p.definition.name, m);
    }),
  );
  if (stopping) break;
  const block = statusBlock(supervisor.processes, current, previous, (now - lastAt) / 1000, new Date(now));
  if (tty) {
    // Lines no wider than the terminal (a wrapped line would throw the redraw off): a service's
    // figures go on a line of their own when its line does not fit.
    const width = Math.max(40, (process.stdout.columns ?? 200) - 1);
    const fitted = block.flatMap((line) => {
      if (line.length <= width) return [line];
      const cut = line.indexOf('  consumed');
      return cut < 0 ? [line] : [line.slice(0, cut), `    ${line.slice(cut + 2)}`];
    });
    const lines = [...header, '', ...fitted, '', ...events].map((line) => line.slice(0, width));
    // Back to the top of the last block, clear to the end of the screen, draw the new one.
    process.stdout.write(`${drawnLines > 0 ? `\x1b[${drawnLines}A\r\x1b[0J` : ''}${lines.join('\n')}\n`);
    drawnLines = lines.length;
  } else if (now - lastPrinted >= 5_000) {
    process.stdout.write(`${block.join('\n')}\n\n`);
    lastPrinted = now;
  }
  previous = current;
  lastAt = now;
}
