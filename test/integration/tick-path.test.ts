/**
 * The tick path end to end on a real broker and a real InfluxDB:
 * queue-ticks → ticks → tick-deserializer → prices / ticks.dlq → influx-writer → bid_ask.
 */
import { DLQ_HEADERS, TOPICS, type Kafka } from '@tradeflow/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateTicks, type GeneratedMessage } from '../../scripts/lib/ticks.ts';
import {
  countPoints,
  influxDatabase,
  infraMode,
  readTopic,
  resetTopics,
  runScript,
  sleep,
  startService,
  stopAllServices,
  testKafka,
  uniqueName,
  waitFor,
} from './helpers.ts';
import { runInfraScript } from './infra.ts';

let kafka: Kafka;

beforeEach(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
});

afterEach(async () => {
  await stopAllServices();
});

function startPipeline(database: string) {
  const group = uniqueName('it');
  return Promise.all([
    startService('tick-deserializer', { GROUP_ID: `${group}-deserializer` }),
    startService('influx-writer', { GROUP_ID: `${group}-writer`, INFLUX_DB: database }),
  ]);
}

const feedArgs = (count: number, invalid: number, seed: number, startTime: number, spacing: number, rate = 0) => [
  '--count', String(count), '--invalid', String(invalid), '--seed', String(seed),
  '--start-time', String(startTime), '--spacing', String(spacing), '--rate', String(rate), '--quiet',
];

const expected = (count: number, invalid: number, seed: number, startTime: number, spacing: number): GeneratedMessage[] => [
  ...generateTicks({ count, invalid, seed, startTime, spacingSeconds: spacing }),
];

describe('tick path', () => {
  it('10,000 ticks with 100 bad ones: exactly the valid ones reach InfluxDB, exactly the bad ones reach ticks.dlq, and the original query returns their means', async () => {
    const database = uniqueName('ticks');
    const influx = await influxDatabase(database);
    await startPipeline(database);
    const startTime = Math.floor(Date.now() / 1000) - 20 * 60;
    const [count, invalid, seed, spacing] = [10_000, 100, 7, 0.1];
    await runScript('queue-ticks.ts', feedArgs(count, invalid, seed, startTime, spacing));
    const sent = expected(count, invalid, seed, startTime, spacing);
    const valid = sent.filter((m) => m.valid);
    const bad = sent.filter((m) => !m.valid);
    expect(valid).toHaveLength(9_900);
    expect(bad).toHaveLength(100);

    await waitFor('all valid ticks in InfluxDB', async () => ((await countPoints(influx, 'bid_ask', 'bid')) >= valid.length ? true : undefined), 120_000);
    await sleep(1_000);
    expect(await countPoints(influx, 'bid_ask', 'bid')).toBe(9_900);

    const perSymbol = new Map<string, number>();
    for (const m of valid) perSymbol.set(m.key!, (perSymbol.get(m.key!) ?? 0) + 1);
    const bySymbol = await influx.query('SELECT count("ask") FROM "bid_ask" GROUP BY "symbol"');
    expect(new Map(bySymbol.map((s) => [s.tags!['symbol']!, Number(s.values[0]![1])]))).toEqual(perSymbol);

    const dlq = await readTopic(kafka, TOPICS.ticksDlq, bad.length);
    expect(dlq.map((r) => r.value.toString()).sort()).toEqual(bad.map((m) => m.value).sort());
    for (const record of dlq) {
      expect(record.headers[DLQ_HEADERS.error]).toMatch(/\S/);
      expect(record.headers[DLQ_HEADERS.sourceTopic]).toBe(TOPICS.ticks);
      expect(record.headers[DLQ_HEADERS.service]).toBe('tick-deserializer');
    }
    const prices = await readTopic(kafka, TOPICS.prices, valid.length);
    expect(prices).toHaveLength(9_900);

    // The original dashboard's query, exactly as written.
    const series = await influx.query(
      `SELECT mean(ask), mean(bid) FROM "bid_ask" WHERE "symbol" = 'IVE' AND time > now() - 1h GROUP BY time(1m) fill(null)`,
    );
    const rows = (series[0]?.values ?? []).filter((row) => row[1] !== null);
    const buckets = new Map<number, { ask: number; bid: number; n: number }>();
    for (const m of valid) {
      const tick = JSON.parse(m.value) as { symbol: string; ask: number; bid: number; timestamp: number };
      if (tick.symbol !== 'IVE') continue;
      const minute = Math.floor(tick.timestamp / 60) * 60;
      const bucket = buckets.get(minute) ?? { ask: 0, bid: 0, n: 0 };
      bucket.ask += tick.ask;
      bucket.bid += tick.bid;
      bucket.n++;
      buckets.set(minute, bucket);
    }
    expect(rows.length).toBe(buckets.size);
    expect(rows.length).toBeGreaterThan(10);
    for (const [time, meanAsk, meanBid] of rows as [number, number, number][]) {
      const bucket = buckets.get(Number(BigInt(time) / 1_000_000_000n));
      expect(bucket, `minute ${time}`).toBeDefined();
      expect(meanAsk).toBeCloseTo(bucket!.ask / bucket!.n, 9);
      expect(meanBid).toBeCloseTo(bucket!.bid / bucket!.n, 9);
    }
  });

  it('a backlog larger than one produce request (message.max.bytes) is drained completely', async () => {
    const database = uniqueName('backlog');
    const influx = await influxDatabase(database);
    const [count, seed] = [40_000, 13];
    await runScript('queue-ticks.ts', feedArgs(count, 0, seed, Math.floor(Date.now() / 1000) - 30 * 60, 0.01));
    await startPipeline(database);
    await waitFor('the whole backlog in InfluxDB', async () => ((await countPoints(influx, 'bid_ask', 'bid')) >= count ? true : undefined), 120_000);
    expect(await readTopic(kafka, TOPICS.prices, count)).toHaveLength(count);
    expect(await countPoints(influx, 'bid_ask', 'bid')).toBe(count);
  });

  it.skipIf(infraMode() === 'env')('InfluxDB stopped mid-stream and restarted: nothing is lost', async () => {
    const database = uniqueName('outage');
    const influx = await influxDatabase(database);
    const [, writer] = await startPipeline(database);
    const startTime = Math.floor(Date.now() / 1000) - 10 * 60;
    const before = runScript('queue-ticks.ts', feedArgs(10_000, 0, 11, startTime, 0.01, 4_000));
    await waitFor('the first points', async () => ((await countPoints(influx, 'bid_ask', 'bid')) > 0 ? true : undefined));
    await runInfraScript('influx', 'stop', { INFLUX_KEEP_DATA: '1' });
    // Ticks sent while InfluxDB is down (200 s of market time later, so no point repeats one of
    // the first feed's): the writer has points to write during the outage however fast it ran.
    const during = runScript('queue-ticks.ts', feedArgs(10_000, 0, 12, startTime + 200, 0.01, 4_000));
    const duringOutage = await waitFor('a write to fail while InfluxDB is down', async () => {
      const metrics = await writer.metrics();
      return metrics.retries > 0 ? metrics : undefined;
    }, 120_000, 250);
    await runInfraScript('influx', 'start', { INFLUX_KEEP_DATA: '1' });
    await Promise.all([before, during]);
    await waitFor('all 20,000 points after the outage', async () => ((await countPoints(influx, 'bid_ask', 'bid')) >= 20_000 ? true : undefined), 120_000);
    await sleep(1_000);
    expect(await countPoints(influx, 'bid_ask', 'bid')).toBe(20_000);
    expect(duringOutage.retries).toBeGreaterThan(0);
    // The outage is logged once (not once per partition or attempt), and so is the recovery.
    const said = (text: string) => writer.output().split(text).length - 1;
    expect(said('write (nothing is committed until it succeeds) failed (INFLUX_UNREACHABLE): waiting for InfluxDB to accept connections')).toBe(1);
    expect(said('write (nothing is committed until it succeeds) succeeded after retrying')).toBeGreaterThanOrEqual(1);
  });

  it('SIGTERM to each service mid-stream: it exits 0 within its shutdown budget, and a restarted one goes on without loss or duplicates', async () => {
    const database = uniqueName('sigterm');
    const influx = await influxDatabase(database);
    const group = uniqueName('it');
    const deserializerEnv = { GROUP_ID: `${group}-deserializer` };
    const writerEnv = { GROUP_ID: `${group}-writer`, INFLUX_DB: database };
    let deserializer = await startService('tick-deserializer', deserializerEnv);
    let writer = await startService('influx-writer', writerEnv);
    const [count, invalid, seed, spacing] = [30_000, 300, 5, 0.01];
    const startTime = Math.floor(Date.now() / 1000) - 10 * 60;
    const feed = runScript('queue-ticks.ts', feedArgs(count, invalid, seed, startTime, spacing, 5_000));

    await waitFor('the deserializer to be mid-stream', async () => ((await deserializer.metrics()).consumed > 2_000 ? true : undefined));
    const deserializerExit = await deserializer.stop('SIGTERM');
    // 0 only if it committed and exited within its shutdown budget (9 s; else it exits 1).
    expect(deserializerExit.code, deserializer.output()).toBe(0);
    // The transaction in hand committed before it left the group: not refused for an unknown member and given up.
    expect(deserializer.output()).toContain('stopped cleanly');
    expect(deserializer.output()).not.toContain('transaction abandoned');
    deserializer = await startService('tick-deserializer', deserializerEnv);

    await waitFor('the writer to be mid-stream', async () => ((await writer.metrics()).written > 8_000 ? true : undefined));
    const writerExit = await writer.stop('SIGTERM');
    expect(writerExit.code, writer.output()).toBe(0);
    writer = await startService('influx-writer', writerEnv);

    await feed;
    const validCount = count - invalid;
    await waitFor('every valid tick in InfluxDB', async () => ((await countPoints(influx, 'bid_ask', 'bid')) >= validCount ? true : undefined), 120_000);
    const prices = await readTopic(kafka, TOPICS.prices, validCount);
    const dlq = await readTopic(kafka, TOPICS.ticksDlq, invalid);
    expect(prices).toHaveLength(validCount);
    expect(new Set(prices.map((r) => r.value.toString())).size).toBe(validCount);
    expect(dlq).toHaveLength(invalid);
    expect(await countPoints(influx, 'bid_ask', 'bid')).toBe(validCount);
  });
});
