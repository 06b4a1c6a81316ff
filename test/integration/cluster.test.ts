/**
 * The order flow on a three-broker KRaft cluster (scripts/infra/kafka.sh with KAFKA_NODES=3:
 * replication factor 3, min.insync.replicas 2, internal topics too) while one broker at a time is
 * hard-killed and started again, as Kafka's own transactions system test does: every component
 * order is filled exactly once, positions equal their fills, nothing is lost.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createKafka, createLogger, kafkaEnv, parseEnv, readCommitted, TOPICS, type Fill, type Kafka } from '@tradeflow/shared';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { splitPortfolioOrder } from '../../services/order-matcher/src/split.ts';
import { resetTopics } from '../../scripts/lib/admin.ts';
import { generateOrders } from '../../scripts/lib/orders.ts';
import { runScript, sleep } from '../../scripts/lib/processes.ts';
import { expectExactlyOnce, expectPositionsEqualFills, positionsAccountingFor, producerWithOpeningPrices, startOrderFlow, readAll } from './order-checks.ts';
import { settledEndOffsets } from './end-offsets.ts';
import { readTopic, stopAllServices, uniqueName } from './helpers.ts';
import { REPO } from './infra.ts';

const exec = promisify(execFile);
const PORT = Number(process.env['KAFKA_CLUSTER_TEST_PORT'] ?? 19192);
const dataDir = mkdtempSync(join(tmpdir(), 'tradeflow-cluster-'));
const clusterEnv = { ...process.env, KAFKA_NODES: '3', KAFKA_PORT: String(PORT), KAFKA_CONTROLLER_PORT: String(PORT + 1), KAFKA_DATA_DIR: dataDir, KAFKA_KEEP_DATA: '1', KAFKA_HEAP: '384m' };
const kafkaScript = async (...args: string[]) => (await exec('bash', [`${REPO}/scripts/infra/kafka.sh`, ...args], { env: clusterEnv, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 })).stdout.trim();

let brokers = '';
let kafka: Kafka;
const logger = createLogger('cluster-test', 'error');

beforeAll(async () => {
  brokers = (await kafkaScript('start')).split('\n').pop()!;
  expect(brokers.split(',')).toHaveLength(3);
  kafka = createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: brokers }), 'cluster-test', logger);
  await resetTopics(kafka, logger);
});

let failed = false;
afterEach((context) => {
  if (context.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  await stopAllServices();
  await kafkaScript('stop').catch(() => undefined);
  // A failed run keeps the brokers' logs for scripts/diagnose-txn-log.ts to read.
  if (failed) console.error(`cluster test failed: the brokers' data is kept in ${dataDir}`);
  else rmSync(dataDir, { recursive: true, force: true });
});

describe('a three-broker cluster', () => {
  it('creates every topic with three replicas and two in sync required', async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [TOPICS.orders, TOPICS.fills, TOPICS.positions] });
      for (const topic of metadata.topics) for (const partition of topic.partitions) expect(partition.replicas, `${topic.name}-${partition.partitionId}`).toHaveLength(3);
      const configs = await admin.describeConfigs({ resources: [{ type: 2, name: TOPICS.fills, configNames: ['min.insync.replicas'] }], includeSynonyms: false });
      expect(configs.resources[0]!.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue).toBe('2');
    } finally {
      await admin.disconnect();
    }
  });

  it('fills every component order exactly once while one broker at a time is SIGKILLed and started again', async () => {
    const SYMBOLS = ['VTI', 'IVE', 'IWS', 'SPY', 'AAPL', 'MSFT'];
    const ORDERS = 15_000;
    const group = uniqueName('it-cluster');
    const env = { KAFKA_BROKERS: brokers, RETRY_MAX_MS: '2000' };
    await startOrderFlow(env, group);

    const start = Math.floor(Date.now() / 1000) - 600;
    await (await producerWithOpeningPrices(kafka, SYMBOLS, start + 100)).disconnect();
    let sequence = 0;
    const expected = new Set<string>();
    for (const message of generateOrders({ count: ORDERS, seed: 51, accounts: 1000, symbols: SYMBOLS, timestamp: () => start + sequence++ * 0.001 })) {
      for (const component of splitPortfolioOrder(message.order as never)) expected.add(component.component_order_id);
    }
    const feed = runScript('queue-orders.ts', [
      '--count', String(ORDERS), '--seed', '51', '--accounts', '1000', '--symbols', SYMBOLS.join(','),
      '--start-time', String(start), '--spacing', '0.001', '--rate', '500', '--quiet',
    ], { KAFKA_BROKERS: brokers, LOG_LEVEL: 'error' });

    // Each broker in turn, while the orders flow: killed as a crash would, down a while, then back
    // on its data (a restart takes 10-35 s on a busy 2-core machine).
    for (const node of [1, 2, 3]) {
      await sleep(3_000);
      await kafkaScript('kill-node', String(node));
      await sleep(5_000);
      await kafkaScript('start-node', String(node));
    }
    await feed;
    // The feed's own delivery first: each order once in `orders` (a duplicate there would be
    // filled twice, rightly, and is the feed's fault, not the services').
    const orders = (await readAll(kafka, TOPICS.orders)).map((r) => r.key);
    expect({ orders: orders.length, distinct: new Set(orders).size }).toEqual({ orders: ORDERS, distinct: ORDERS });

    const records = await readTopic(kafka, TOPICS.fills, expected.size, 600_000);
    const fills = records.map((r) => JSON.parse(r.value.toString()) as Fill);
    const positions = await positionsAccountingFor(kafka, expected.size, 600_000);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);
  }, 1_200_000);

  it('the lean reader of committed records reads every committed record once while the leader of some of them is SIGKILLed', async () => {
    const topic = uniqueName('it_cluster_wire');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 6, replicationFactor: 3 }], waitForLeaders: true });
    const producer = kafka.producer({ transactionalId: uniqueName('it-cluster-wire'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    // Every fourth transaction aborted, its numbers sent again in the next: a duplicate would show an aborted one read.
    const COUNT = 100_000;
    for (let sent = 0, round = 0; sent < COUNT; round++) {
      const transaction = await producer.transaction();
      await transaction.send({ topic, messages: Array.from({ length: 2_500 }, (_, i) => ({ key: String(sent + i), value: JSON.stringify({ n: sent + i, pad: 'x'.repeat(100) }) })) });
      if (round % 4 === 1) await transaction.abort();
      else {
        await transaction.commit();
        sent += 2_500;
      }
    }
    await producer.disconnect();
    await admin.disconnect();
    // Not admin.fetchTopicOffsets right after the commit: that end may stop before the last transaction (end-offsets.ts).
    const ends = await settledEndOffsets(brokers, topic);
    const seen = new Set<number>();
    let duplicates = 0;
    let retries = 0;
    let kill: Promise<string> | undefined;
    await readCommitted(
      // Small fetches: the read is still under way when the broker dies.
      // The kill is waited for after the fetch that crossed a quarter, so the read cannot finish first.
      {
        brokers: brokers.split(','),
        clientId: 'it-cluster-wire',
        partitionMaxBytes: 16 * 1024,
        maxBytes: 64 * 1024,
        onRetry: () => retries++,
        afterFetch: async () => {
          await kill;
        },
      },
      topic,
      [...ends].map(([partition, end]) => ({ partition, start: 0, end })),
      (_partition, _offset, data, _ks, _kl, valueStart, valueLength) => {
        const n = (JSON.parse(data.toString('utf8', valueStart, valueStart + valueLength)) as { n: number }).n;
        if (seen.has(n)) duplicates++;
        seen.add(n);
        if (seen.size === COUNT / 4 && kill === undefined) kill = kafkaScript('kill-node', '2');
      },
    );
    await kill;
    await kafkaScript('start-node', '2');
    expect({ read: seen.size, duplicates, retried: retries > 0 }).toEqual({ read: COUNT, duplicates: 0, retried: true });
  }, 600_000);
});
