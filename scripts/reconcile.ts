/**
 * Reconciliation, the batch path: reads `fills` (from the beginning, or a time range), recomputes
 * every account's position exactly, and compares it with the latest `positions` snapshots and with
 * the fills InfluxDB stored. Prints a summary (accounts and fills checked, every difference with its
 * account and amounts) and exits 1 on any difference, 2 on bad arguments.
 *   node scripts/reconcile.ts [--from TIME] [--to TIME] [--no-influx]
 * TIME: ISO 8601 or epoch seconds. With a range, positions are not compared (a snapshot sums the
 * whole history). Reads KAFKA_BROKERS and INFLUX_URL, INFLUX_DB, INFLUX_USERNAME, INFLUX_PASSWORD;
 * RECONCILE_FETCH_BYTES (16 MiB) is how much of a partition one fetch brings; RECONCILE_WORKERS
 * (the CPUs) how many threads read, each its share of the partitions; RECONCILE_READER `wire` (the
 * default: the lean reader of committed records, packages/shared/src/wire) or `kafkajs` (the Kafka
 * client's consumer).
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import {
  createKafka,
  createLogger,
  decodeMessage,
  eachToEnd,
  influxEnv,
  InfluxClient,
  kafkaEnv,
  parseEnv,
  partitionFor,
  Position,
  TOPICS,
  type Kafka,
} from '@tradeflow/shared';
import { comparePositions, describeDifference, differencesWithInflux, type Difference, type StoredFill } from './lib/reconcile.ts';
import { fillSource, mergeReadings, readFillRanges, shareOut, type PartitionRange, type Reading, type Window } from './lib/reconcile-read.ts';

const { values } = parseArgs({
  options: { from: { type: 'string' }, to: { type: 'string' }, 'no-influx': { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
});
const USAGE = 'usage: node scripts/reconcile.ts [--from TIME] [--to TIME] [--no-influx]   (TIME: ISO 8601 or epoch seconds)';
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
function time(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Date.parse(text) / 1000;
  if (!Number.isFinite(seconds)) {
    process.stderr.write(`reconcile: --${name} ${text} is neither ISO 8601 nor epoch seconds\n${USAGE}\n`);
    process.exit(2);
  }
  return seconds;
}
const from = time('from', values.from);
const to = time('to', values.to);
const env = parseEnv({ ...kafkaEnv, ...influxEnv });
const readerName = process.env['RECONCILE_READER'] ?? 'wire';
if (readerName !== 'wire' && readerName !== 'kafkajs') {
  process.stderr.write(`reconcile: RECONCILE_READER=${readerName}: must be wire or kafkajs\n`);
  process.exit(2);
}
const reader: 'wire' | 'kafkajs' = readerName;
const fetchBytes = Number(process.env['RECONCILE_FETCH_BYTES'] ?? 16 * 1024 * 1024);
if (!Number.isSafeInteger(fetchBytes) || fetchBytes < 1024 || fetchBytes > 2 ** 31 - 1) {
  process.stderr.write(`reconcile: RECONCILE_FETCH_BYTES=${process.env['RECONCILE_FETCH_BYTES']}: must be a whole number of bytes from 1024 to 2147483647\n`);
  process.exit(2);
}
const logger = createLogger('reconcile', process.env['LOG_LEVEL'] ?? 'error');
const kafka = createKafka(env, 'reconcile', logger);
const started = performance.now();
const n = (x: number) => x.toLocaleString('en-US');
const tty = process.stderr.isTTY === true;

function progress(done: number, total: number, what: string): void {
  if (!tty) return;
  const width = 30;
  const share = total === 0 ? 1 : Math.min(1, done / total);
  const rate = done / Math.max(0.001, (performance.now() - started) / 1000);
  process.stderr.write(`\r[${'#'.repeat(Math.round(share * width)).padEnd(width, '-')}] ${(share * 100).toFixed(0).padStart(3)}% ${n(done)}/${n(total)} ${what}  ${n(Math.round(rate))}/s   `);
}

/** The offsets to read: from the beginning (or the first record at --from) to the end as it is now (or --to). */
async function range(k: Kafka): Promise<Map<number, { start: bigint; end: bigint }>> {
  const admin = k.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(TOPICS.fills);
    // Record times are when a fill was written, a little after its own time: start a minute early.
    const byTime = async (seconds: number | undefined) =>
      seconds === undefined ? undefined : new Map((await admin.fetchTopicOffsetsByTimestamp(TOPICS.fills, Math.floor(seconds * 1000))).map((o) => [o.partition, BigInt(o.offset)]));
    const starts = await byTime(from === undefined ? undefined : from - 60);
    const ends = await byTime(to === undefined ? undefined : to + 60);
    return new Map(
      offsets.map((o) => {
        const high = BigInt(o.high);
        const start = starts?.get(o.partition) ?? BigInt(o.low);
        const end = ends?.get(o.partition);
        return [o.partition, { start: start < 0n ? high : start, end: end === undefined || end < 0n ? high : end }];
      }),
    );
  } finally {
    await admin.disconnect();
  }
}

/** The fills InfluxDB holds in the range, read in windows of time. */
async function storedFills(influx: InfluxClient, fromSeconds: number, toSeconds: number): Promise<StoredFill[]> {
  const stored: StoredFill[] = [];
  const windowNs = 3_600n * 1_000_000_000n;
  const startNs = BigInt(Math.floor(fromSeconds * 1000)) * 1_000_000n;
  const endNs = BigInt(Math.ceil(toSeconds * 1000) + 1) * 1_000_000n;
  for (let a = startNs; a < endNs; a += windowNs) {
    const b = a + windowNs < endNs ? a + windowNs : endNs;
    for (const series of await influx.query(`SELECT "fill_id", "taxpayer_id", "filled_amount" FROM "fills" WHERE time >= ${a} AND time < ${b}`)) {
      const [id, taxpayer, amount] = ['fill_id', 'taxpayer_id', 'filled_amount'].map((c) => series.columns.indexOf(c));
      for (const row of series.values) stored.push({ fill_id: String(row[id!]), taxpayer_id: Number(row[taxpayer!]), amount: Number(row[amount!]) });
    }
  }
  return stored;
}

/** The first and last fill time InfluxDB holds (epoch seconds), if any. */
async function storedExtent(influx: InfluxClient): Promise<{ first: number; last: number } | undefined> {
  const edge = async (fn: 'first' | 'last') => {
    const series = await influx.query(`SELECT ${fn}("filled_amount") FROM "fills"`);
    const t = series[0]?.values[0]?.[0];
    return t === undefined ? undefined : Number(BigInt(String(t)) / 1_000_000n) / 1000;
  };
  const [first, last] = [await edge('first'), await edge('last')];
  return first === undefined || last === undefined ? undefined : { first, last };
}

/** readFillRanges in a worker thread (reconcile-worker.ts). */
function inWorker(index: number, ranges: readonly PartitionRange[], window: Window, stored: readonly StoredFill[] | undefined, onProgress: (read: number) => void): Promise<Reading> {
  const worker = new Worker(new URL('./lib/reconcile-worker.ts', import.meta.url), {
    workerData: { ranges, window, stored, fetchBytes, reader, logLevel: process.env['LOG_LEVEL'] ?? 'error', index },
  });
  return new Promise((resolve, reject) => {
    let reading: Reading | undefined;
    worker.on('message', (message: { read?: number; reading?: Reading }) => {
      if (message.read !== undefined) onProgress(message.read);
      if (message.reading !== undefined) reading = message.reading;
    });
    worker.once('error', reject);
    worker.once('exit', (code) => (reading !== undefined ? resolve(reading) : reject(new Error(`reconcile worker ${index} exited with code ${code} before it finished`))));
  });
}

async function main(): Promise<number> {
  const offsets = await range(kafka);
  const total = [...offsets.values()].reduce((sum, r) => sum + Number(r.end > r.start ? r.end - r.start : 0n), 0);
  const useInflux = !values['no-influx'];
  const influx = useInflux ? new InfluxClient({ url: env.INFLUX_URL, database: env.INFLUX_DB, username: env.INFLUX_USERNAME, password: env.INFLUX_PASSWORD }) : undefined;
  let stored: StoredFill[] | undefined;
  if (influx !== undefined) {
    const extent = await storedExtent(influx);
    stored = extent === undefined ? [] : await storedFills(influx, from ?? extent.first, to ?? extent.last);
  }
  const influxPoints = stored?.length ?? 0;

  const ranges = [...offsets].map(([partition, r]) => ({ partition, ...r })).filter((r) => r.end > r.start);
  const workers = Math.max(1, Math.min(Number(process.env['RECONCILE_WORKERS'] ?? availableParallelism()), ranges.length));
  const shares = shareOut(ranges, workers);
  // InfluxDB's fills go to the share that holds their account's partition (fills are keyed by it).
  const storedShares: StoredFill[][] = shares.map(() => []);
  if (stored !== undefined) {
    const shareOf = new Map(shares.flatMap((share, i) => share.map((r) => [r.partition, i] as const)));
    for (const fill of stored) storedShares[shareOf.get(partitionFor({ topic: TOPICS.fills, key: String(fill.taxpayer_id), value: null }, offsets.size)) ?? 0]!.push(fill);
  }
  const reads = shares.map(() => 0);
  const onProgress = (i: number) => (read: number) => {
    reads[i] = read;
    progress(reads.reduce((a, b) => a + b, 0), total, 'records of fills');
  };
  const window = { from, to };
  const readings = await Promise.all(
    shares.map((share, i) =>
      workers === 1
        ? readFillRanges(fillSource(reader, env, () => kafka, fetchBytes), share, window, stored === undefined ? undefined : storedShares[i], onProgress(i))
        : inWorker(i, share, window, stored === undefined ? undefined : storedShares[i]!, onProgress(i)),
    ),
  );
  const reading = mergeReadings(readings);
  const { read, unreadable } = reading;
  const firstRecordAt = reading.firstRecordAt === undefined ? undefined : reading.firstRecordAt - performance.timeOrigin;
  progress(read, total, 'records of fills');
  if (tty) process.stderr.write('\n');
  const readSeconds = (performance.now() - started) / 1000;
  const streamSeconds = firstRecordAt === undefined ? 0 : (performance.now() - firstRecordAt) / 1000;

  const differences: Difference[] = [];
  let snapshots = 0;
  const fullHistory = from === undefined && to === undefined;
  if (fullHistory) {
    const admin = kafka.admin();
    await admin.connect();
    const partitions = (await admin.fetchTopicOffsets(TOPICS.positions)).map((p) => p.partition);
    await admin.disconnect();
    const latest = new Map<number, Position>();
    // A fetch at a time: only the latest snapshot of each account is kept.
    await eachToEnd(kafka, TOPICS.positions, partitions, 'reconcile', (_partition, entries) => {
      for (const entry of entries) {
        const position = decodeMessage(Position, entry.value);
        if (position.ok) latest.set(position.value.taxpayer_id, position.value);
      }
    });
    snapshots = latest.size;
    differences.push(...comparePositions(reading.accounts, latest));
  }
  if (stored !== undefined) differences.push(...differencesWithInflux(reading.missing, reading.leftover));

  const out = process.stdout;
  out.write(`reconciliation of ${fullHistory ? 'every fill' : `fills from ${from === undefined ? 'the beginning' : new Date(from * 1000).toISOString()} to ${to === undefined ? 'now' : new Date(to * 1000).toISOString()}`}\n`);
  out.write(
    `  fills checked         ${n(reading.fills)} (${n(read)} records read in ${readSeconds.toFixed(1)} s, ${n(Math.round(read / Math.max(readSeconds, 0.001)))}/s; ` +
      `${n(Math.round(read / Math.max(streamSeconds, 0.001)))}/s from the first record to the last)\n`,
  );
  out.write(`  accounts checked      ${n(reading.accounts.size)}\n`);
  out.write(`  positions snapshots   ${fullHistory ? n(snapshots) : 'not compared (a time range)'}\n`);
  out.write(`  InfluxDB fills        ${useInflux ? n(influxPoints) : 'not compared (--no-influx)'}\n`);
  for (const line of unreadable.slice(0, 20)) out.write(`  unreadable: ${line}\n`);
  if (differences.length === 0 && unreadable.length === 0) {
    out.write('  no differences\n');
    return 0;
  }
  out.write(`  DIFFERENCES: ${n(differences.length)}\n`);
  for (const d of differences.slice(0, 200)) out.write(`    ${describeDifference(d)}\n`);
  if (differences.length > 200) out.write(`    ... and ${n(differences.length - 200)} more\n`);
  return 1;
}

try {
  process.exitCode = await main();
} catch (error) {
  process.stderr.write(`\nreconcile: ${(error as Error).message}\n`);
  process.exitCode = 1;
}
process.exit();
