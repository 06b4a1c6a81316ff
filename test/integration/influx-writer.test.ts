/**
 * influx-writer against a real InfluxDB with authentication on, its user holding rights on its
 * database only (as docker-compose's influxdb image creates INFLUXDB_USER): a point InfluxDB refuses
 * for good costs only itself, and a database the user may not create is waited for, with a log
 * line that says so.
 */
import { DLQ_HEADERS, TOPICS, type Kafka } from '@tradeflow/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { countPoints, influxDatabase, influxFor, readTopic, resetTopics, sleep, startService, stopAllServices, testKafka, uniqueName, waitFor } from './helpers.ts';

let kafka: Kafka;

beforeEach(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
});

afterEach(async () => {
  await stopAllServices();
});

const price = (symbol: string, timestamp: number, bid = 93.5) => JSON.stringify({ symbol, exchange: 'NASDAQ', bid, ask: bid + 0.25, timestamp });

async function producePrices(values: readonly string[]): Promise<void> {
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  try {
    // One key, so one partition and one batch for the writer.
    await producer.send({ topic: TOPICS.prices, acks: -1, messages: values.map((value) => ({ key: 'IVE', value })) });
  } finally {
    await producer.disconnect();
  }
}

describe('influx-writer', () => {
  it('a field type conflict in the middle of a batch: that point goes to influx.dlq with InfluxDB\'s reason, the rest are written', async () => {
    const database = uniqueName('conflict');
    const influx = await influxDatabase(database);
    // In the shard of early 2001, `ask` is a string: a price from then cannot be written.
    const old = 978_307_200; // 2001-01-01T00:00:00Z
    await influx.write([`bid_ask,exchange=NASDAQ,symbol=IVE ask="not a number" ${old}000000000`]);
    const now = Math.floor(Date.now() / 1000) - 60;
    const values = [price('IVE', now), price('IVE', now + 1), price('IVE', old + 1), price('IVE', now + 2), price('IVE', now + 3)];
    await producePrices(values);

    const writer = await startService('influx-writer', { GROUP_ID: uniqueName('it-writer'), INFLUX_DB: database, INFLUX_TOPICS: TOPICS.prices });
    const [letter] = await readTopic(kafka, TOPICS.influxDlq, 1, 120_000);
    expect(letter, writer.output()).toBeDefined();
    expect(letter!.value.toString()).toBe(values[2]);
    expect(letter!.key).toBe('IVE');
    expect(letter!.headers[DLQ_HEADERS.error]).toMatch(/field type conflict/);
    expect(letter!.headers[DLQ_HEADERS.service]).toBe('influx-writer');
    expect(letter!.headers[DLQ_HEADERS.sourceTopic]).toBe(TOPICS.prices);
    expect(letter!.headers[DLQ_HEADERS.sourceOffset]).toBe('2');
    expect(letter!.headers['dlq.influx.line']).toMatch(/^bid_ask,exchange=NASDAQ,symbol=IVE ask=93\.75,bid=93\.5 978307201000000002$/);

    await waitFor('the four good points', async () => ((await countPoints(influx, 'bid_ask', 'bid')) >= 4 ? true : undefined));
    const written = await influx.query(`SELECT bid FROM "bid_ask" WHERE time > '2020-01-01T00:00:00Z'`);
    expect(written[0]!.values).toHaveLength(4);
    const metrics = await writer.metrics();
    expect(metrics.written).toBe(4);
    expect(metrics.rejected).toBe(1);
    expect(metrics.dlq).toBe(1);
    expect(await readTopic(kafka, TOPICS.influxDlq, 1)).toHaveLength(1);
  });

  it('a database its user may not create: waits, saying what to do, and writes once an admin created it', async () => {
    const database = uniqueName('missing');
    await producePrices([price('IVE', Math.floor(Date.now() / 1000) - 30)]);
    const writer = await startService('influx-writer', { GROUP_ID: uniqueName('it-writer'), INFLUX_DB: database, INFLUX_TOPICS: TOPICS.prices, RETRY_MAX_MS: '500' });
    await waitFor('the log line saying what is missing', async () => (writer.output().includes('INFLUX_DATABASE_MISSING') ? true : undefined));
    expect(writer.output()).toContain(`InfluxDB database ${database} does not exist`);
    expect(writer.output()).toContain('Create it as an admin (CREATE DATABASE');
    await sleep(2_000);
    // Logged once, however often it was retried.
    expect(writer.output().split('waiting for the InfluxDB database to be created').length - 1).toBe(1);
    expect(writer.child.exitCode).toBeNull();

    const influx = await influxDatabase(database);
    await waitFor('the point', async () => ((await countPoints(influx, 'bid_ask', 'bid')) === 1 ? true : undefined));
    expect(writer.output()).toContain('InfluxDB database exists (this user may not create databases, and need not)');
    expect(await countPoints(influxFor(database), 'bid_ask', 'bid')).toBe(1);
  });
});
