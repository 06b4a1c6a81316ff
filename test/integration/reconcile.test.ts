/**
 * scripts/reconcile.ts on the real broker and InfluxDB: it passes on a clean run of the pipeline,
 * and fails, naming the account and the amounts, on a missing InfluxDB point and on a corrupted
 * positions snapshot.
 */
import { partitionFor, TOPICS, type Fill, type InfluxClient, type Kafka, type Position } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runCommand } from '../../scripts/lib/processes.ts';
import { latestPositionsOfAll, readFills } from './order-checks.ts';
import { brokers, countPoints, influxCredentials, influxDatabase, influxUrl, resetTopics, runScript, startService, stopAllServices, testKafka, uniqueName, waitFor } from './helpers.ts';

let kafka: Kafka;
let influx: InfluxClient;
const database = uniqueName('reconcile');
let fills: Fill[] = [];

function reconcile(...args: string[]) {
  return reconcileWith({}, ...args);
}

function reconcileWith(extra: Record<string, string>, ...args: string[]) {
  const { username, password } = influxCredentials();
  // Small fetches: every partition takes many batches, as a real history does.
  const env = { ...process.env, KAFKA_BROKERS: brokers(), INFLUX_URL: influxUrl(), INFLUX_DB: database, INFLUX_USERNAME: username, INFLUX_PASSWORD: password, RECONCILE_FETCH_BYTES: '2048', ...extra };
  return runCommand([process.execPath, `${REPO}/scripts/reconcile.ts`, ...args], env);
}

beforeAll(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
  influx = await influxDatabase(database);
  const group = uniqueName('it-reconcile');
  await startService('fill-publisher', { GROUP_ID: `${group}-fills` });
  await startService('influx-writer', { GROUP_ID: `${group}-writer`, INFLUX_DB: database, INFLUX_TOPICS: TOPICS.fills });
  await runScript('queue-executions.ts', ['--count', '300', '--accounts', '25', '--allocations', '--seed', '5', '--quiet']);
  fills = await waitFor('300 fills', async () => {
    const all = await readFills(kafka);
    return all.length >= 300 ? all : undefined;
  }, 120_000, 1_000);
  await waitFor('positions and InfluxDB to hold every fill', async () => {
    const positions = await latestPositionsOfAll(kafka);
    const summed = [...positions.values()].reduce((sum, p) => sum + p.fills, 0);
    return summed === 300 && (await countPoints(influx, 'fills', 'filled_amount')) === 300 ? true : undefined;
  }, 120_000, 1_000);
  await stopAllServices();
});

afterAll(async () => {
  await stopAllServices();
});

describe('node scripts/reconcile.ts', () => {
  it('passes on a clean run: every fill checked against the positions and InfluxDB', async () => {
    const { code, stdout, stderr } = await reconcile();
    expect(code, `${stdout}${stderr}`).toBe(0);
    expect(stdout).toMatch(/fills checked +300 \(300 records read/);
    expect(stdout).toMatch(/accounts checked +25\b/);
    expect(stdout).toMatch(/positions snapshots +25\b/);
    expect(stdout).toMatch(/InfluxDB fills +300\b/);
    expect(stdout).toContain('no differences');
  });

  it('passes the same with the Kafka client reading (RECONCILE_READER=kafkajs, as for a SASL cluster), and refuses a reader it does not know', async () => {
    const { code, stdout, stderr } = await reconcileWith({ RECONCILE_READER: 'kafkajs' });
    expect(code, `${stdout}${stderr}`).toBe(0);
    expect(stdout).toMatch(/fills checked +300 \(300 records read/);
    expect(stdout).toContain('no differences');
    const wrong = await reconcileWith({ RECONCILE_READER: 'librdkafka' });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('RECONCILE_READER=librdkafka: must be wire or kafkajs');
  });

  it('fails on a fill InfluxDB lost, naming its account and amount', async () => {
    const lost = fills[17]!;
    // Its exact time (RFC 3339: epoch nanoseconds do not fit a JSON number) and series: points of
    // other partitions may share the time.
    const [series] = await influx.query(`SELECT "fill_id" FROM "fills" WHERE "fill_id" = '${lost.fill_id}' GROUP BY "kafka_partition"`, 'rfc3339');
    await influx.execute(`DELETE FROM "fills" WHERE "kafka_partition" = '${series!.tags!['kafka_partition']}' AND time = '${String(series!.values[0]![0])}'`);
    expect(await countPoints(influx, 'fills', 'filled_amount')).toBe(299);
    const { code, stdout } = await reconcile();
    expect(code).toBe(1);
    expect(stdout).toContain('DIFFERENCES: 1');
    expect(stdout).toContain(`account ${lost.taxpayer_id}: fill ${lost.fill_id} (${lost.filled_amount}) is not in InfluxDB`);
  });

  it('fails on a corrupted positions snapshot, naming the account and both amounts', async () => {
    const positions = await latestPositionsOfAll(kafka);
    const [taxpayer, position] = [...positions].find(([, p]) => p.fills > 1)!;
    const corrupted: Position = { ...position, cash: Math.round((position.cash + 0.01) * 1e6) / 1e6 };
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    // Where fill-publisher keeps the account: the partition of its fills.
    const partition = partitionFor({ topic: TOPICS.fills, key: String(taxpayer), value: null }, 6);
    await producer.send({ topic: TOPICS.positions, acks: -1, messages: [{ key: String(taxpayer), value: JSON.stringify(corrupted), partition }] });
    await producer.disconnect();
    const { code, stdout } = await reconcile('--no-influx');
    expect(code).toBe(1);
    expect(stdout).toContain('DIFFERENCES: 1');
    expect(stdout).toContain(`account ${taxpayer}: cash is ${corrupted.cash} in its positions snapshot, ${position.cash} from its fills`);
  });

  it('refuses a time it cannot read, and checks a time range without positions', async () => {
    expect((await reconcile('--from', 'yesterday')).code).toBe(2);
    const first = Math.min(...fills.map((f) => f.timestamp));
    const { code, stdout } = await reconcile('--from', String(Math.floor(first)), '--no-influx');
    expect(code).toBe(0);
    expect(stdout).toMatch(/fills checked +300\b/);
    expect(stdout).toContain('not compared (a time range)');
  });
});
