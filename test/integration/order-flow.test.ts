/**
 * The order flow on a real broker: orders → order-matcher (split, match) → executions →
 * fill-publisher → fills and positions, exactly once even when services are killed or rebalanced.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TOPICS, type Fill, type Kafka, type Position } from '@tradeflow/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { splitPortfolioOrder } from '../../services/order-matcher/src/split.ts';
import { generateOrders } from '../../scripts/lib/orders.ts';
import { REPO, runCommand } from '../../scripts/lib/processes.ts';
import { expectExactlyOnce, expectPositionsEqualFills, positionsAccountingFor } from './order-checks.ts';
import { brokers, diagnosed, readTopic, resetTopics, runScript, sleep, STATE_DIR, startService, stopAllServices, testKafka, uniqueName, waitFor, type ServiceProcess } from './helpers.ts';

let kafka: Kafka;

beforeEach(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
});

afterEach(async () => {
  await stopAllServices();
});

async function produce(topic: string, messages: { key: string; value: object }[]): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: messages.map((m) => ({ key: m.key, value: JSON.stringify(m.value) })) });
  } finally {
    await producer.disconnect();
  }
}

const ID = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('order flow', () => {
  it('queue-orders right after the topics are created writes every order once', async () => {
    // The topics were just deleted and created again (beforeEach): the first requests may reach
    // partitions that have no leader yet, and the seed producer retries them.
    await runScript('queue-orders.ts', ['--count', '3000', '--seed', '7', '--accounts', '100', '--quiet']);
    // readTopic lingers after the count is reached, so duplicates would be read too.
    const records = await readTopic(kafka, TOPICS.orders, 3000);
    const ids = records.map((r) => (JSON.parse(r.value.toString()) as { portfolio_order_id: string }).portfolio_order_id);
    expect(records.length).toBe(3000);
    expect(new Set(ids).size).toBe(3000);
  });

  it('queue-fills at full speed sends the share of a chunk for each partition in pieces the broker takes: every fill in the topic once', async () => {
    // A chunk of 10,000 fills of ~600 bytes put ~1 MB in each partition's one call, above the
    // broker's message.max.bytes: the feed retried the refusal for ever, silently with --quiet.
    await runScript('queue-fills.ts', ['--count', '30000', '--accounts', '100000', '--seed', '6', '--quiet']);
    const records = await readTopic(kafka, TOPICS.fills, 30_000);
    expect(records.length).toBe(30_000);
    expect(new Set(records.map((r) => (JSON.parse(r.value.toString()) as Fill).fill_id)).size).toBe(30_000);
  });

  it('a feed whose batches a topic refuses as too large stops and says why (not retried for ever)', async () => {
    const topic = uniqueName('it_small_messages');
    const admin = kafka.admin();
    await admin.connect();
    // Right after the topics were created again (beforeEach) the broker may refuse a moment.
    await waitFor('the topic and its leader', async () => {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: '2000' }] }] }).catch(() => false);
      return ((await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined))?.topics[0]?.partitions[0]?.leader ?? -1) >= 0 || undefined;
    }, 60_000, 200);
    await admin.disconnect();
    const { code, stderr } = await runCommand([process.execPath, `${REPO}/scripts/queue-fills.ts`, '--count', '100', '--topic', topic, '--quiet'], { ...process.env, KAFKA_BROKERS: brokers(), LOG_LEVEL: 'error' });
    expect(code).toBe(1);
    // the reason, without a stack trace
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).toMatch(new RegExp(`^queue-fills: ${topic} refused a batch of up to 256 KiB as too large \\(MESSAGE_TOO_LARGE; its largest message is \\d+ bytes\\): the topic's max.message.bytes`, 'm'));
  });

  it('queue-orders stopped with SIGTERM sends the chunk in hand and exits 0; every order it reports sent is in the topic once', async () => {
    const child = spawn(process.execPath, [`${REPO}/scripts/queue-orders.ts`, '--count', '1000000', '--rate', '300', '--seed', '8'], {
      env: { ...process.env, KAFKA_BROKERS: brokers(), LOG_LEVEL: 'error' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await waitFor('queue-orders to send', async () => (/sent \d+\/1000000/.test(stderr) ? true : undefined), 120_000, 100);
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(0);
    const sent = Number(/sent to orders (\d+) orders/.exec(stderr)?.[1]);
    expect(sent).toBeGreaterThan(0);
    const records = await readTopic(kafka, TOPICS.orders, sent);
    expect(records.length).toBe(sent);
    expect(new Set(records.map((r) => r.key)).size).toBe(sent);
  });

  it('a scripted scenario yields exactly the expected fills and positions; orders before any price execute on the first price', async () => {
    const group = uniqueName('it');
    const matcher = await startService('order-matcher', { GROUP_ID: `${group}-matcher`, MAX_PRICE_AGE_MS: '5000', NETTING_WINDOW_MS: '1000' });
    await startService('fill-publisher', { GROUP_ID: `${group}-fills` });
    const T = Math.floor(Date.now() / 1000) - 60;
    const consumed = async (n: number) => waitFor(`order-matcher to consume ${n} records`, async () => ((await matcher.metrics()).consumed >= n ? true : undefined));
    const tick = (symbol: string, at: number, bid: number, ask: number) => ({ key: symbol, value: { symbol, exchange: 'NYSEARCA', bid, ask, timestamp: T + at } });
    const portfolio = (n: number, taxpayer_id: number, order_type: string, amount: number, portfolio: [string, number][], priority: number, at: number) => ({
      key: ID(n),
      value: { taxpayer_id, portfolio_order_id: ID(n), order_type, amount, portfolio, priority, timestamp: T + at },
    });

    await produce(TOPICS.prices, [tick('IVE', 0, 93.97388, 94.190756), tick('VTI', 0, 105.5, 105.52)]);
    await consumed(2);
    await produce(TOPICS.orders, [
      portfolio(1, 1, 'BUY', 1000, [['IVE', 0.6], ['VTI', 0.4]], 1, 1),
      portfolio(2, 2, 'SELL', 500, [['IVE', 1]], 1, 1),
      portfolio(3, 1, 'BUY', 250, [['IWS', 1]], 1, 1),
    ]);
    // The three orders; their four components are matched as they are split, in the same
    // transaction, and left out when read back (not counted again).
    await consumed(2 + 3);
    const early = await readTopic(kafka, TOPICS.fills, 3);
    expect(early.map((r) => JSON.parse(r.value.toString()).component_order_id).sort()).toEqual([`${ID(1)}/IVE`, `${ID(1)}/VTI`, `${ID(2)}/IVE`]);

    await produce(TOPICS.prices, [tick('IWS', 2, 72.8, 72.85)]);
    await consumed(6);
    await produce(TOPICS.orders, [portfolio(4, 3, 'BUY', 1000, [['IVE', 1]], 2, 3.2), portfolio(5, 4, 'SELL', 400, [['IVE', 1]], 2, 3.5)]);
    await consumed(8);
    await produce(TOPICS.prices, [tick('IVE', 4, 94, 94.5)]);

    const fills = (await readTopic(kafka, TOPICS.fills, 6)).map((r) => JSON.parse(r.value.toString()) as Fill);
    const view = fills
      .map((f) => [f.component_order_id.replace(/^0+-0+-4000-8000-0+/, ''), f.taxpayer_id, f.order_type, f.filled_price, f.filled_shares, f.filled_amount, f.delta_shares_position, f.delta_cash_position])
      .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    expect(view).toEqual([
      ['1/IVE', 1, 'BUY', 94.190756, 6.370051, 599.999919, 6.370051, -599.999919],
      ['1/VTI', 1, 'BUY', 105.52, 3.79075, 399.99994, 3.79075, -399.99994],
      ['2/IVE', 2, 'SELL', 93.97388, 5.320627, 499.999963, -5.320627, 499.999963],
      ['3/IWS', 1, 'BUY', 72.85, 3.431708, 249.999928, 3.431708, -249.999928],
      ['4/IVE', 3, 'BUY', 94.5, 10.58201, 999.999945, 10.58201, -999.999945],
      ['5/IVE', 4, 'SELL', 94.5, 4.232804, 399.999978, -4.232804, 399.999978],
    ]);
    const block = fills.filter((f) => f.taxpayer_id === 3 || f.taxpayer_id === 4);
    expect(block).toHaveLength(2);
    expect(block[0]!.execution_id).toMatch(/^blk:/);
    expect(block[1]!.execution_id).toBe(block[0]!.execution_id);

    const executions = (await readTopic(kafka, TOPICS.executions, 5)).map((r) => JSON.parse(r.value.toString()) as { net_side?: string; requested_amount: number; requested_shares: number });
    expect(executions).toHaveLength(5);
    expect(executions.filter((e) => e.net_side !== undefined).map((e) => [e.net_side, e.requested_amount, e.requested_shares])).toEqual([['BUY', 600, 6.349206]]);

    // Once the snapshots account for all six fills: the positions stage may be behind the fills.
    const positions = await positionsAccountingFor(kafka, 6, 120_000);
    expect(Object.fromEntries([...positions].map(([k, p]) => [k, { shares: p.shares, cash: p.cash, fills: p.fills }]))).toEqual({
      1: { shares: { IVE: 6.370051, IWS: 3.431708, VTI: 3.79075 }, cash: -1249.999787, fills: 3 },
      2: { shares: { IVE: -5.320627 }, cash: 499.999963, fills: 1 },
      3: { shares: { IVE: 10.58201 }, cash: -999.999945, fills: 1 },
      4: { shares: { IVE: -4.232804 }, cash: 399.999978, fills: 1 },
    });
  });
});

describe('order flow under failure', () => {
  const SYMBOLS = ['VTI', 'IVE', 'IWS', 'SPY', 'AAPL', 'MSFT', 'JPM', 'XOM', 'KO', 'PG'];
  const ORDERS = 50_000;
  /**
   * Above the sum of a test's own waits (each step's, a settle's), so that a stalled step fails
   * naming itself, with every service's state (diagnosed), instead of the test's timeout hiding it.
   */
  const FAILURE_TEST_MS = 1_500_000;

  /** Starts a 50,000-order run whose prices are all fresh; returns the component orders it must fill. */
  async function startRun(seed: number, rate: number, orders = ORDERS): Promise<{ expected: Set<string>; feed: Promise<string> }> {
    const start = Math.floor(Date.now() / 1000) - 600;
    await produce(
      TOPICS.prices,
      SYMBOLS.map((symbol, i) => ({ key: symbol, value: { symbol, exchange: 'NYSE', bid: 50 + i, ask: 50.05 + i, timestamp: start + 100 } })),
    );
    let sequence = 0;
    const expected = new Set<string>();
    for (const message of generateOrders({ count: orders, seed, accounts: 1000, symbols: SYMBOLS, timestamp: () => start + sequence++ * 0.001 })) {
      for (const component of splitPortfolioOrder(message.order as never)) expected.add(component.component_order_id);
    }
    const feed = runScript('queue-orders.ts', [
      '--count', String(orders), '--seed', String(seed), '--accounts', '1000', '--symbols', SYMBOLS.join(','),
      '--start-time', String(start), '--spacing', '0.001', '--rate', String(rate), '--quiet',
    ]);
    return { expected, feed };
  }

  async function producedBy(service: ServiceProcess): Promise<number> {
    return (await service.metrics()).produced;
  }

  /** Reads every committed fill and position, once the positions account for `expectedFills` fills. */
  async function settle(expectedFills: number): Promise<{ fills: Fill[]; positions: Map<number, Position> }> {
    const records = await readTopic(kafka, TOPICS.fills, expectedFills, 300_000);
    // Short of fills: say so now, not after waiting for positions that cannot account for them too.
    if (records.length < expectedFills) throw new Error(`${records.length} of ${expectedFills} fills committed after 300 s`);
    const fills = records.map((r) => JSON.parse(r.value.toString()) as Fill);
    return { fills, positions: await positionsAccountingFor(kafka, expectedFills, 180_000) };
  }

  it('SIGKILL order-matcher, then fill-publisher, mid-run: every component order is filled exactly once and positions equal the fills', diagnosed(async () => {
    const group = uniqueName('it');
    const matcherEnv = { GROUP_ID: `${group}-matcher` };
    const fillsEnv = { GROUP_ID: `${group}-fills` };
    let matcher = await startService('order-matcher', matcherEnv);
    let fillPublisher = await startService('fill-publisher', fillsEnv);
    const { expected, feed } = await startRun(31, 5_000);

    await waitFor('order-matcher a third through', async () => ((await producedBy(matcher)) > expected.size / 3 ? true : undefined), 300_000, 100);
    expect((await matcher.stop('SIGKILL')).signal).toBe('SIGKILL');
    matcher = await startService('order-matcher', matcherEnv);

    await waitFor('fill-publisher mid-run', async () => ((await fillPublisher.metrics()).consumed > expected.size / 2 ? true : undefined), 300_000, 100);
    expect((await fillPublisher.stop('SIGKILL')).signal).toBe('SIGKILL');
    fillPublisher = await startService('fill-publisher', fillsEnv);

    await feed;
    const { fills, positions } = await settle(expected.size);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);
  }), FAILURE_TEST_MS);

  it('one transactional producer per slot: two order-matcher instances in one group with rebalances mid-run: every component order is filled exactly once', diagnosed(async () => {
    const group = uniqueName('it');
    // Three slots over six partitions: one instance gets two slots, the other one.
    const matcherEnv = { GROUP_ID: `${group}-matcher`, TRANSACTIONAL_PRODUCER: 'slot', TRANSACTION_SLOTS: '3' };
    const first = await startService('order-matcher', matcherEnv);
    await startService('fill-publisher', { GROUP_ID: `${group}-fills` });
    const { expected, feed } = await startRun(32, 2_500);

    await waitFor('order-matcher a quarter through', async () => ((await producedBy(first)) > expected.size / 4 ? true : undefined), 300_000, 100);
    const matchGroup = `assigned:${matcherEnv.GROUP_ID}`;
    // Every partition of the stage's inputs (orders, orders.components, prices) while it is alone.
    const alone = (await first.metrics()).extra[matchGroup] ?? 0;
    expect(alone).toBeGreaterThan(0);
    const second = await startService('order-matcher', matcherEnv);
    await waitFor('the rebalance to give the second instance partitions', async () => (((await second.metrics()).extra[matchGroup] ?? 0) > 0 ? true : undefined), 120_000, 100);
    await waitFor('the first instance to give partitions up', async () => (((await first.metrics()).extra[matchGroup] ?? alone) < alone ? true : undefined), 120_000, 100);
    await sleep(2_000);
    expect((await first.stop('SIGKILL')).signal).toBe('SIGKILL');

    await feed;
    const { fills, positions } = await settle(expected.size);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);
  }), FAILURE_TEST_MS);

  it('one transactional producer per instance: two order-matchers and two fill-publishers, a third joining and the first of each SIGKILLed mid-run: every component order is filled exactly once', diagnosed(async () => {
    const group = uniqueName('it');
    const matcherEnv = { GROUP_ID: `${group}-matcher`, TRANSACTIONAL_PRODUCER: 'instance' };
    const fillsEnv = { GROUP_ID: `${group}-fills`, TRANSACTIONAL_PRODUCER: 'instance' };
    // The second of each fetches with the Kafka client's consumer, the others with the lean reader:
    // both in one group, handing partitions to each other.
    const clientReader = { KAFKA_STAGE_READER: 'kafkajs' };
    const matchers = [await startService('order-matcher', matcherEnv), await startService('order-matcher', { ...matcherEnv, ...clientReader })];
    const fillPublishers = [await startService('fill-publisher', fillsEnv), await startService('fill-publisher', { ...fillsEnv, ...clientReader })];
    const readers = (service: ServiceProcess) =>
      service.output().split('\n').filter((line) => line.includes('fetches the stage') && line.includes('"reader"')).map((line) => (JSON.parse(line) as { reader: string }).reader);

    const { expected, feed } = await startRun(33, 2_500);
    const assigned = async (service: ServiceProcess, groupId: string) => (await service.metrics()).extra[`assigned:${groupId}`] ?? 0;

    // Both instances of each stage share the partitions.
    for (const [services, groupId] of [[matchers, matcherEnv.GROUP_ID], [fillPublishers, `${fillsEnv.GROUP_ID}-fill`], [fillPublishers, `${fillsEnv.GROUP_ID}-positions`]] as const) {
      for (const service of services) await waitFor(`${groupId}: both instances assigned partitions`, async () => ((await assigned(service, groupId)) > 0 ? true : undefined), 120_000, 100);
    }
    expect(readers(matchers[0]!)).toEqual(['wire']);
    expect(readers(matchers[1]!)).toEqual(['kafkajs']);
    // fill-publisher runs two stages: fills from executions, positions from fills.
    expect(readers(fillPublishers[0]!)).toEqual(['wire', 'wire']);
    expect(readers(fillPublishers[1]!)).toEqual(['kafkajs', 'kafkajs']);
    await waitFor('order-matcher a quarter through', async () => ((await producedBy(matchers[0]!)) + (await producedBy(matchers[1]!)) > expected.size / 4 ? true : undefined), 300_000, 100);
    // A third instance of each joins (a rebalance while both others are transacting) ...
    const before = await assigned(matchers[0]!, matcherEnv.GROUP_ID);
    matchers.push(await startService('order-matcher', matcherEnv));
    fillPublishers.push(await startService('fill-publisher', fillsEnv));
    await waitFor('the first order-matcher to give partitions up', async () => ((await assigned(matchers[0]!, matcherEnv.GROUP_ID)) < before ? true : undefined), 120_000, 100);
    // ... then the first of each is killed with its transaction in hand.
    await sleep(1_000);
    expect((await matchers[0]!.stop('SIGKILL')).signal).toBe('SIGKILL');
    expect((await fillPublishers[0]!.stop('SIGKILL')).signal).toBe('SIGKILL');

    await feed;
    const { fills, positions } = await settle(expected.size);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);
  }), FAILURE_TEST_MS);

  it("fill-publisher's positions store: a restart opens it (no changelog read), SIGKILL loses nothing, a lost store is restored from the changelog", diagnosed(async () => {
    const group = uniqueName('it');
    const fillsEnv = { GROUP_ID: `${group}-fills` };
    await startService('order-matcher', { GROUP_ID: `${group}-matcher` });
    let fillPublisher = await startService('fill-publisher', fillsEnv);
    const expected = new Set<string>();
    const run = async (seed: number, orders: number, during?: () => Promise<void>) => {
      const started = await startRun(seed, 5_000, orders);
      for (const id of started.expected) expected.add(id);
      await during?.();
      await started.feed;
      return settle(expected.size);
    };
    const admin = kafka.admin();
    await admin.connect();
    const partitions = (await admin.fetchTopicMetadata({ topics: [TOPICS.fills] })).topics[0]!.partitions.length;
    await admin.disconnect();
    const logLines = (service: ServiceProcess, message: string) => service.output().split('\n').filter((line) => line.includes(`"msg":"${message}`));

    await run(41, 10_000);
    expect((await fillPublisher.stop('SIGTERM')).code).toBe(0);
    fillPublisher = await startService('fill-publisher', fillsEnv);
    await run(42, 10_000, async () => {
      await waitFor('fill-publisher to take the new fills', async () => ((await fillPublisher.metrics()).consumed > 0 ? true : undefined), 300_000, 100);
    });
    // Every task opened from the store as of the committed offsets; not one changelog record read.
    expect(logLines(fillPublisher, 'task state opened from the local store')).toHaveLength(partitions);
    expect(logLines(fillPublisher, 'task state restored')).toEqual([]);
    // New accounts came in this run: they start from zero, not from an "unreadable" snapshot.
    expect(logLines(fillPublisher, 'unreadable position snapshot')).toEqual([]);

    const killed = run(43, 20_000, async () => {
      await waitFor('fill-publisher mid-run', async () => ((await fillPublisher.metrics()).consumed > 2_000 ? true : undefined), 300_000, 50);
      expect((await fillPublisher.stop('SIGKILL')).signal).toBe('SIGKILL');
      fillPublisher = await startService('fill-publisher', fillsEnv);
    });
    let { fills, positions } = await killed;
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);

    // The store is gone (a new container without its volume): every task is restored from positions.
    expect((await fillPublisher.stop('SIGTERM')).code).toBe(0);
    rmSync(join(STATE_DIR, `${fillsEnv.GROUP_ID}-positions-${hostname()}`), { recursive: true });
    fillPublisher = await startService('fill-publisher', fillsEnv);
    ({ fills, positions } = await run(44, 10_000));
    const restored = logLines(fillPublisher, 'task state restored').map((line) => JSON.parse(line) as { changelogEntries: number });
    expect(restored).toHaveLength(partitions);
    expect(restored.reduce((sum, line) => sum + line.changelogEntries, 0)).toBeGreaterThan(0);
    expectExactlyOnce(fills, expected);
    expectPositionsEqualFills(positions, fills);
  }), FAILURE_TEST_MS);
});
