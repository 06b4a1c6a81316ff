/**
 * Benchmark of the tick path on this machine, with the broker and InfluxDB on it too. Prints a table:
 *   1. validation alone: parseTick over pre-built messages, one thread (= ticks/s per core);
 *      beside it, encoding bid_ask lines with @influxdata/influxdb-client's Point;
 *   2. tick-deserializer through Kafka: a backlog of ticks drained by one service process;
 *   3. end to end: a feed at a fixed rate for a fixed time through tick-deserializer and
 *      influx-writer into InfluxDB, sustained rows/s and consumer lag at the end;
 *   peak memory (RSS) of each service process.
 * Uses KAFKA_BROKERS / INFLUX_URL (scripts/bench.sh starts local ones when unset).
 *   node scripts/bench-ticks.ts [--validate 300000] [--backlog 300000] [--rate 20000] [--seconds 60] [--parts validate,backlog,e2e]
 */
import { parseArgs } from 'node:util';
import { createKafka, createLogger, InfluxClient, kafkaEnv, parseEnv, quoteIdentifier, TOPICS, type ConsumedRecord } from '@tradeflow/shared';
import { parseTick } from '../services/tick-deserializer/src/deserialize.ts';
import { encodePrice } from '../services/influx-writer/src/points.ts';
import { fmt, peakMemory, Report } from './lib/report.ts';
import { resetTopics, topicEndOffsets } from './lib/admin.ts';
import { endChildrenOnSignals, runScript, sleep, startService, waitFor, type ServiceProcess } from './lib/processes.ts';
import { generateTicks } from './lib/ticks.ts';

// Ctrl-C or kill ends the services and feeds it started too.
endChildrenOnSignals();

const { values } = parseArgs({
  options: {
    validate: { type: 'string', default: '300000' },
    backlog: { type: 'string', default: '300000' },
    rate: { type: 'string', default: '20000' },
    seconds: { type: 'string', default: '60' },
    parts: { type: 'string', default: 'validate,backlog,e2e' },
  },
});
const VALIDATE = Number(values.validate);
const BACKLOG = Number(values.backlog);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const PARTS = new Set(values.parts.split(','));

const logger = createLogger('bench', 'error');
const env = parseEnv(kafkaEnv);
const influxUrl = process.env['INFLUX_URL'] ?? 'http://127.0.0.1:8086';
const kafka = createKafka(env, 'bench', logger);
const figures = new Report();
const report = figures.add.bind(figures);

// 1. Validation alone, and line encoding beside it.
if (PARTS.has('validate')) {
  process.stderr.write('validation alone (one thread)...\n');
  const buffers = [...generateTicks({ count: VALIDATE, seed: 3, startTime: 1_700_000_000, spacingSeconds: 0.001 })].map((m) => Buffer.from(m.value));
  const rounds: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    let ok = 0;
    for (const b of buffers) if (parseTick(b, 4096).ok) ok++;
    const seconds = (performance.now() - started) / 1000;
    if (ok !== buffers.length) throw new Error(`only ${ok} of ${buffers.length} ticks validated`);
    rounds.push(buffers.length / seconds);
  }
  rounds.sort((a, b) => a - b);
  report('validation alone (parseTick)', `${fmt(rounds[2]!)} ticks/s per core`, `median of 5 rounds over ${fmt(VALIDATE)} ticks (best ${fmt(rounds[4]!)})`);

  const records: ConsumedRecord[] = buffers.map((b, i) => {
    const parsed = parseTick(b, 4096);
    if (!parsed.ok) throw new Error(parsed.reason);
    return { topic: TOPICS.prices, partition: 0, offset: String(i), key: null, value: Buffer.from(JSON.stringify(parsed.price)), headers: {}, timestamp: '0' };
  });
  const encodeRounds: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    for (const r of records) encodePrice(r);
    encodeRounds.push(records.length / ((performance.now() - started) / 1000));
  }
  encodeRounds.sort((a, b) => a - b);
  report('bid_ask line encoding (decode + Point)', `${fmt(encodeRounds[2]!)} points/s per core`, 'median of 5 rounds');
}

/** Peak RSS, and what it is made of. */
async function peakRss(service: ServiceProcess): Promise<[string, string]> {
  return peakMemory(await service.metrics());
}

// 2. tick-deserializer through Kafka: drain a backlog.
if (PARTS.has('backlog')) {
  process.stderr.write(`tick-deserializer through Kafka: loading a backlog of ${fmt(BACKLOG)} ticks...\n`);
  await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
  await runScript('queue-ticks.ts', ['--count', String(BACKLOG), '--seed', '4', '--quiet'], { LOG_LEVEL: 'error' });
  const group = `bench-deserializer-${Date.now()}`;
  const service = await startService('tick-deserializer', { env: { ...process.env, GROUP_ID: group, LOG_LEVEL: 'warn' } as Record<string, string> });
  let firstAt = 0;
  await waitFor('the first consumed tick', async () => {
    if ((await service.metrics()).consumed > 0) return (firstAt = performance.now());
    return undefined;
  }, 60_000, 20);
  const firstCount = (await service.metrics()).consumed;
  const doneAt = await waitFor('the backlog to drain', async () => ((await service.metrics()).consumed >= BACKLOG ? performance.now() : undefined), 600_000, 50);
  const rate = (BACKLOG - firstCount) / ((doneAt - firstAt) / 1000);
  report('tick-deserializer through Kafka', `${fmt(rate)} ticks/s`, `backlog of ${fmt(BACKLOG)}, exactly-once transactions per batch`);
  report('tick-deserializer peak RSS (backlog)', ...(await peakRss(service)));
  await service.stop();
}

// 3. End to end at a fixed rate.
if (PARTS.has('e2e')) {
  process.stderr.write(`end to end: ${fmt(RATE)} ticks/s for ${SECONDS} s...\n`);
  await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
  const database = `bench_${Date.now()}`;
  // As an admin: the services' user (INFLUX_USERNAME) may not create databases, as in compose.
  const influx = new InfluxClient({ url: influxUrl, database, username: process.env['INFLUX_ADMIN_USER'], password: process.env['INFLUX_ADMIN_PASSWORD'] });
  await influx.createDatabase();
  if (process.env['INFLUX_USERNAME'] !== undefined) await influx.execute(`GRANT ALL ON ${quoteIdentifier(database)} TO ${quoteIdentifier(process.env['INFLUX_USERNAME'])}`);
  const group = `bench-e2e-${Date.now()}`;
  const baseEnv = { ...process.env, LOG_LEVEL: 'warn' } as Record<string, string>;
  const deserializer = await startService('tick-deserializer', { env: { ...baseEnv, GROUP_ID: `${group}-d` } });
  const writer = await startService('influx-writer', { env: { ...baseEnv, GROUP_ID: `${group}-w`, INFLUX_DB: database } });
  const count = RATE * SECONDS;
  const feedStarted = performance.now();
  const feed = runScript('queue-ticks.ts', ['--count', String(count), '--rate', String(RATE), '--seed', '5', '--quiet'], { LOG_LEVEL: 'error' });
  const samples: { t: number; written: number; lag: number }[] = [];
  let feedDone = false;
  void feed.then(() => (feedDone = true));
  while (!feedDone) {
    await sleep(5_000);
    const [d, w] = await Promise.all([deserializer.metrics(), writer.metrics()]);
    samples.push({ t: (performance.now() - feedStarted) / 1000, written: w.written, lag: d.lag + w.lag });
    process.stderr.write(`  t=${samples.at(-1)!.t.toFixed(0)}s written=${fmt(w.written)} lag=${fmt(d.lag + w.lag)}\n`);
  }
  await feed;
  const feedSeconds = (performance.now() - feedStarted) / 1000;
  const sent = await topicEndOffsets(kafka, TOPICS.ticks);
  const [d, w] = await Promise.all([deserializer.metrics(), writer.metrics()]);
  const lagAtEnd = sent - d.consumed + (d.produced - w.consumed);
  report('feed achieved', `${fmt(sent / feedSeconds)} ticks/s`, `${fmt(sent)} ticks in ${feedSeconds.toFixed(1)} s (target ${fmt(RATE)}/s)`);
  report('end to end rows in InfluxDB while feeding', `${fmt(w.written / feedSeconds)} rows/s`, `${fmt(w.written)} rows`);
  report('lag when the feed ended', `${fmt(lagAtEnd)} ticks`, `samples of lag every 5 s: ${samples.map((s) => fmt(s.lag)).join(', ')}`);
  const drainedAt = await waitFor('the lag to drain', async () => ((await writer.metrics()).written >= sent ? performance.now() : undefined), 600_000, 100);
  report('time to drain after the feed ended', `${((drainedAt - feedStarted) / 1000 - feedSeconds).toFixed(1)} s`);
  const points = Number((await influx.query('SELECT count(bid) FROM bid_ask'))[0]?.values[0]?.[1] ?? 0);
  report('rows in InfluxDB / ticks sent', `${fmt(points)} / ${fmt(sent)}`, points === sent ? 'complete' : 'MISMATCH');
  report('tick-deserializer peak RSS (end to end)', ...(await peakRss(deserializer)));
  report('influx-writer peak RSS (end to end)', ...(await peakRss(writer)));
  await Promise.all([deserializer.stop(), writer.stop()]);
}

figures.print();
process.exit(0);
