/**
 * Runs the pipeline's services, a live tick feed and a live order feed against the broker and InfluxDB named by
 * KAFKA_BROKERS / INFLUX_URL, with a one-line status per service, until Ctrl-C; then stops the feed
 * and the services it started (SIGTERM, by their pids). scripts/run-local.sh wraps this with a
 * local broker and InfluxDB.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { MetricsSnapshot } from '@tradeflow/shared';
import { spawn } from 'node:child_process';
import { REPO, sleep, startService, type ServiceProcess } from './lib/processes.ts';
import { statusLine } from './lib/status.ts';

const { values } = parseArgs({
  options: {
    'tick-rate': { type: 'string', default: '2000' },
    'order-rate': { type: 'string', default: '200' },
    'log-dir': { type: 'string', default: `${REPO}/.local/logs` },
  },
});
const tickRate = Number(values['tick-rate']);
const orderRate = Number(values['order-rate']);
const logDir = String(values['log-dir']);
mkdirSync(logDir, { recursive: true });

const SERVICES = ['tick-deserializer', 'influx-writer', 'order-matcher', 'fill-publisher'] as const;
const env: Record<string, string> = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));

const services: ServiceProcess[] = [];
let stopping = false;
const feeds: ReturnType<typeof spawn>[] = [];

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\nstopping the feeds and the services...\n');
  for (const feed of feeds) feed.kill('SIGTERM');
  const results = await Promise.all(services.map(async (s) => ({ name: s.name, ...(await s.stop('SIGTERM')) })));
  for (const r of results) process.stdout.write(`${r.name}: exited with ${r.code ?? r.signal} after ${r.ms} ms\n`);
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

for (const name of SERVICES) {
  process.stdout.write(`starting ${name} (log: ${logDir}/${name}.log)\n`);
  services.push(await startService(name, { env, logFile: `${logDir}/${name}.log` }));
}

function startFeed(script: string, args: string[]): void {
  const log = createWriteStream(`${logDir}/${script}.log`, { flags: 'a' });
  const child = spawn(process.execPath, [`${REPO}/scripts/${script}.ts`, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.pipe(log);
  feeds.push(child);
}
process.stdout.write(`starting the feeds: ${tickRate} ticks/s and ${orderRate} portfolio orders/s (logs: ${logDir}/queue-*.log)\n`);
startFeed('queue-ticks', ['--count', '1000000000', '--rate', String(tickRate)]);
await sleep(2_000);
startFeed('queue-orders', ['--count', '1000000000', '--rate', String(orderRate), '--seed', String(Date.now() % 100_000)]);

const tty = process.stdout.isTTY;
let previous = new Map<string, MetricsSnapshot>();
let lastAt = Date.now();
process.stdout.write('press Ctrl-C to stop\n');
while (!stopping) {
  await sleep(1_000);
  const now = Date.now();
  const lines: string[] = [];
  const current = new Map<string, MetricsSnapshot>();
  for (const service of services) {
    try {
      const m = await service.metrics();
      current.set(service.name, m);
      lines.push(statusLine(m, previous.get(service.name), (now - lastAt) / 1000));
    } catch {
      lines.push(`${service.name.padEnd(18)}  not answering (see ${logDir}/${service.name}.log)`);
    }
  }
  if (stopping) break;
  if (tty) process.stdout.write(`\x1b[${lines.length}A\x1b[0J`.repeat(previous.size > 0 ? 1 : 0) + lines.join('\n') + '\n');
  else process.stdout.write(lines.join('\n') + '\n');
  previous = current;
  lastAt = now;
}
