/**
 * A broker that wants SASL (scripts/infra/kafka.sh with KAFKA_SASL_PORT: a SASL_PLAINTEXT listener
 * taking PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512): the lean client authenticates with each
 * mechanism and names a refused user, and the order flow runs on it end to end (the services'
 * Kafka client and their lean reader and transactional producer, all authenticated), exactly once.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createKafka, createLogger, kafkaEnv, parseEnv, TOPICS, type Fill, type Kafka } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookUpCluster } from '../../packages/shared/src/wire/committed-reader.ts';
import { connectTo } from '../../packages/shared/src/wire/connection.ts';
import { SaslError, type SaslMechanism } from '../../packages/shared/src/wire/sasl.ts';
import { splitPortfolioOrder } from '../../services/order-matcher/src/split.ts';
import { resetTopics } from '../../scripts/lib/admin.ts';
import { generateOrders } from '../../scripts/lib/orders.ts';
import { expectExactlyOnce, expectPositionsEqualFills, positionsAccountingFor, producerWithOpeningPrices, startOrderFlow } from './order-checks.ts';
import { readTopic, stopAllServices, uniqueName } from './helpers.ts';
import { REPO } from './infra.ts';

const exec = promisify(execFile);
const PORT = Number(process.env['KAFKA_SASL_TEST_PORT'] ?? 19292);
const dataDir = mkdtempSync(join(tmpdir(), 'tradeflow-sasl-'));
const brokerEnv = { ...process.env, KAFKA_PORT: String(PORT), KAFKA_CONTROLLER_PORT: String(PORT + 1), KAFKA_SASL_PORT: String(PORT + 2), KAFKA_DATA_DIR: dataDir, KAFKA_HEAP: '384m' };
const kafkaScript = async (...args: string[]) => (await exec('bash', [`${REPO}/scripts/infra/kafka.sh`, ...args], { env: brokerEnv, timeout: 600_000 })).stdout.trim();

let sasl = { brokers: '', username: '', password: '' };
let kafka: Kafka;
const logger = createLogger('sasl-test', 'error');
const saslEnv = (mechanism: SaslMechanism) => ({ KAFKA_BROKERS: sasl.brokers, KAFKA_SASL_MECHANISM: mechanism, KAFKA_SASL_USERNAME: sasl.username, KAFKA_SASL_PASSWORD: sasl.password });

beforeAll(async () => {
  await kafkaScript('start');
  const [brokers, username, password] = (await kafkaScript('sasl-credentials')).split('\n');
  sasl = { brokers: brokers!, username: username!, password: password! };
  kafka = createKafka(parseEnv(kafkaEnv, saslEnv('scram-sha-256')), 'sasl-test', logger);
  await resetTopics(kafka, logger);
}, 600_000);

afterAll(async () => {
  await stopAllServices();
  await kafkaScript('stop').catch(() => undefined);
  rmSync(dataDir, { recursive: true, force: true });
});

/** The cluster as the lean client sees it through one authenticated connection. */
async function metadataWith(mechanism: SaslMechanism, password: string) {
  const [host, port] = sasl.brokers.split(',')[0]!.split(':');
  return lookUpCluster([{ host: host!, port: Number(port) }], [TOPICS.fills], (h, p) =>
    connectTo({ clientId: 'sasl-test', sasl: { mechanism, username: sasl.username, password } }, h, p, 30_000),
  );
}

describe('a broker that wants SASL', () => {
  it.each(['plain', 'scram-sha-256', 'scram-sha-512'] as const)('lets the lean client in with %s', async (mechanism) => {
    const cluster = await metadataWith(mechanism, sasl.password);
    expect([...cluster.brokers.values()].map((b) => `${b.host}:${b.port}`)).toEqual([sasl.brokers]);
  });

  it.each(['plain', 'scram-sha-512'] as const)('refuses a wrong password with %s, naming the user', async (mechanism) => {
    const refused = await metadataWith(mechanism, `${sasl.password}-not`).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(SaslError);
    expect((refused as Error).message).toContain(`SASL ${mechanism.toUpperCase()} authentication of "${sasl.username}" failed`);
  });

  it('runs the order flow on it exactly once, every client authenticated', async () => {
    const group = uniqueName('it-sasl');
    const env = { ...saslEnv('scram-sha-512'), RETRY_MAX_MS: '2000' };
    await startOrderFlow(env, group);

    const SYMBOLS = ['VTI', 'IVE', 'SPY'];
    const start = Math.floor(Date.now() / 1000) - 600;
    const producer = await producerWithOpeningPrices(kafka, SYMBOLS, start + 100);
    const expected = new Set<string>();
    const messages: { key: string | null; value: string }[] = [];
    let sequence = 0;
    for (const message of generateOrders({ count: 300, seed: 7, accounts: 50, symbols: SYMBOLS, timestamp: () => start + sequence++ * 0.001 })) {
      if (message.order === undefined) continue;
      for (const component of splitPortfolioOrder(message.order as never)) expected.add(component.component_order_id);
      messages.push({ key: message.key, value: message.value });
    }
    await producer.send({ topic: TOPICS.orders, acks: -1, messages });
    await producer.disconnect();

    const records = await readTopic(kafka, TOPICS.fills, expected.size, 300_000);
    const fills = records.map((r) => JSON.parse(r.value.toString()) as Fill);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(await positionsAccountingFor(kafka, expected.size, 300_000), fills);
  }, 600_000);
});
