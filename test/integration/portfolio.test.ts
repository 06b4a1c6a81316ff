/**
 * The portfolio service on the real broker: fills become visible in its API (valued at the latest
 * prices), two instances of one group answer for every account, a restart from its checkpoint
 * serves the same answers without reading the topics from the beginning, and its event stream
 * sends a change as it happens.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOPICS, type Fill, type Kafka } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTRUMENTS, instrumentPrices } from '../../scripts/lib/market.ts';
import { freePort } from '../../scripts/lib/processes.ts';
import { readFills, sumFills } from './order-checks.ts';
import { resetTopics, runScript, sleep, startService, stopAllServices, testKafka, uniqueName, waitFor, type ServiceProcess } from './helpers.ts';

let kafka: Kafka;
const storeRoot = mkdtempSync(join(tmpdir(), 'portfolio-it-'));
const group = uniqueName('it-portfolio');
const ACCOUNTS = 40;
let fills: Fill[] = [];

interface Instance {
  readonly process: ServiceProcess;
  readonly url: string;
  readonly port: number;
}

async function startPortfolio(port?: number, extra: Record<string, string> = {}): Promise<Instance> {
  const portfolioPort = port ?? (await freePort());
  const process = await startService('portfolio', { GROUP_ID: group, PORTFOLIO_PORT: String(portfolioPort), PORTFOLIO_STORE_DIR: storeRoot, ...extra });
  return { process, url: `http://127.0.0.1:${portfolioPort}`, port: portfolioPort };
}

const get = async (url: string) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  return { status: res.status, servedBy: res.headers.get('x-tradeflow-served-by'), body: (await res.json()) as Record<string, unknown> };
};

async function producePrices(): Promise<void> {
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  await producer.send({ topic: TOPICS.prices, acks: -1, messages: instrumentPrices(Math.floor(Date.now() / 1000)) });
  await producer.disconnect();
}

const micros = (x: number) => BigInt(Math.round(x * 1e6));

/** Every account of the fills, as the API must show it. */
function expectAnswersMatchFills(answers: Map<number, Record<string, unknown>>): void {
  const sums = sumFills(fills);
  expect(answers.size).toBe(sums.size);
  for (const [taxpayer, sum] of sums) {
    const answer = answers.get(taxpayer)!;
    expect(answer['fills'], `fills of ${taxpayer}`).toBe(sum.fills);
    expect(micros(answer['cash'] as number), `cash of ${taxpayer}`).toBe(sum.cash);
    const holdings = answer['holdings'] as { symbol: string; shares: number; price: number; value: number }[];
    for (const [symbol, shares] of sum.shares) {
      if (shares === 0n) continue;
      const holding = holdings.find((h) => h.symbol === symbol);
      expect(holding, `${symbol} of ${taxpayer}`).toBeDefined();
      expect(micros(holding!.shares)).toBe(shares);
      const instrument = INSTRUMENTS.find((i) => i.symbol === symbol)!;
      expect(holding!.price).toBeCloseTo(instrument.price + 0.01, 9);
    }
    const total = (answer['cash'] as number) + holdings.reduce((n, h) => n + h.value, 0);
    expect(answer['total']).toBeCloseTo(total, 5);
  }
}

async function answersOf(instance: Instance): Promise<Map<number, Record<string, unknown>>> {
  const answers = new Map<number, Record<string, unknown>>();
  for (const taxpayer of new Set(fills.map((f) => f.taxpayer_id))) {
    const { status, body } = await get(`${instance.url}/accounts/${taxpayer}`);
    expect(status, JSON.stringify(body)).toBe(200);
    answers.set(taxpayer, body);
  }
  return answers;
}

let first: Instance;

beforeAll(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
  await producePrices();
  await startService('fill-publisher', { GROUP_ID: `${group}-fills` });
  first = await startPortfolio();
  await runScript('queue-executions.ts', ['--count', '400', '--accounts', String(ACCOUNTS), '--allocations', '--seed', '3', '--quiet']);
  fills = await waitFor('every fill', async () => {
    const all = await readFills(kafka);
    return all.length >= 400 ? all : undefined;
  }, 120_000, 1_000);
  await sleep(2_000);
  fills = await readFills(kafka);
});

afterAll(async () => {
  await stopAllServices();
  rmSync(storeRoot, { recursive: true, force: true });
});

describe('portfolio service', () => {
  it('shows every account as the sum of its fills, valued at the latest mid prices, with its recent fills newest first', async () => {
    const counts = sumFills(fills);
    await waitFor('every account to account for its fills', async () => {
      for (const [taxpayer, sum] of counts) {
        const { status, body } = await get(`${first.url}/accounts/${taxpayer}`);
        if (status !== 200 || body['fills'] !== sum.fills) return undefined;
      }
      return true;
    }, 120_000, 1_000);
    expectAnswersMatchFills(await answersOf(first));

    const [taxpayer, sum] = [...counts].find(([, s]) => s.fills >= 3)!;
    const recent = await get(`${first.url}/accounts/${taxpayer}/fills?limit=2`);
    // Newest first; fills of one time in the order they came (the later first).
    const theirs = fills.map((f, i) => ({ f, i })).filter(({ f }) => f.taxpayer_id === taxpayer).sort((a, b) => b.f.timestamp - a.f.timestamp || b.i - a.i).map(({ f }) => f);
    expect(sum.fills).toBe(theirs.length);
    expect((recent.body['fills'] as Fill[]).map((f) => f.fill_id)).toEqual(theirs.slice(0, 2).map((f) => f.fill_id));
    expect(recent.body['lag']).toEqual({ positions: 0, fills: 0 });
  });

  it('answers an unknown account with 404 and a bad id or limit with 400, as JSON', async () => {
    expect(await get(`${first.url}/accounts/987654321`)).toMatchObject({ status: 404, body: { error: 'no account 987654321 (it has had no fill)' } });
    expect(await get(`${first.url}/accounts/12ab`)).toMatchObject({ status: 400, body: { error: 'not a taxpayer id: "12ab" (a positive whole number is)' } });
    expect(await get(`${first.url}/accounts/-4`)).toMatchObject({ status: 400 });
    expect(await get(`${first.url}/accounts/${fills[0]!.taxpayer_id}/fills?limit=0`)).toMatchObject({ status: 400, body: { error: 'limit must be a whole number from 1 to 200, not "0"' } });
    expect(await get(`${first.url}/nothing-here`)).toMatchObject({ status: 404 });
  });

  it('sends an event when a fill changes the account', async () => {
    const taxpayer = fills[0]!.taxpayer_id;
    const before = (await get(`${first.url}/accounts/${taxpayer}`)).body['fills'] as number;
    const controller = new AbortController();
    const res = await fetch(`${first.url}/accounts/${taxpayer}/events`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const parsed = () => text.split('\n\n').filter((e) => e.startsWith('event: account')).map((e) => JSON.parse(e.split('\ndata: ')[1]!) as { fills: number });
    /** Reads on until there are at least `n` events. */
    const events = async (n: number) => {
      while (parsed().length < n) text += new TextDecoder().decode((await reader.read()).value);
      return parsed();
    };
    expect((await events(1))[0]!.fills).toBe(before);
    // A fill from the venue, as fill-publisher would write it: positions follow it.
    const fill: Fill = { ...fills[0]!, fill_id: `${fills[0]!.fill_id}/again`, component_order_id: `${fills[0]!.component_order_id}/again`, timestamp: Date.now() / 1000 };
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: TOPICS.fills, acks: -1, messages: [{ key: String(taxpayer), value: JSON.stringify(fill) }] });
    await producer.disconnect();
    // The fill's own event comes first (the position follows it), then the position's.
    let seen = await events(2);
    while (!seen.some((e) => e.fills === before + 1)) seen = await events(seen.length + 1);
    expect(seen.at(-1)!.fills).toBe(before + 1);
    controller.abort();
    fills = await readFills(kafka);
  });

  it('two instances in one group: each holds some partitions, and either answers for every account the same', async () => {
    // The second fetches with the Kafka client's consumer, the first with the lean reader (the
    // default): the two ways of reading a view answer the same.
    const second = await startPortfolio(undefined, { KAFKA_VIEW_READER: 'kafkajs' });
    await waitFor('both to hold partitions', async () => {
      const [a, b] = await Promise.all([first.process.metrics(), second.process.metrics()]);
      return (a.extra['partitions'] ?? 0) > 0 && (b.extra['partitions'] ?? 0) > 0 && a.extra['partitions']! + b.extra['partitions']! === 6 ? true : undefined;
    }, 120_000, 500);
    const accounts = [...new Set(fills.map((f) => f.taxpayer_id))];
    const owners = new Set<string>();
    await waitFor('both to answer for every account', async () => {
      for (const taxpayer of accounts) {
        const [a, b] = await Promise.all([get(`${first.url}/accounts/${taxpayer}`), get(`${second.url}/accounts/${taxpayer}`)]);
        if (a.status !== 200 || b.status !== 200 || a.body['fills'] !== b.body['fills']) return undefined;
      }
      return true;
    }, 120_000, 1_000);
    for (const taxpayer of accounts) {
      const [a, b] = await Promise.all([get(`${first.url}/accounts/${taxpayer}`), get(`${second.url}/accounts/${taxpayer}`)]);
      expect(b.body).toEqual(a.body);
      owners.add(a.body['served_by'] as string);
    }
    expect([...owners].sort()).toEqual([first.url, second.url].sort());
    expect(first.process.output()).toMatch(/"topics":\["positions","fills"\],"reader":"wire"/);
    expect(second.process.output()).toMatch(/"topics":\["positions","fills"\],"reader":"kafkajs"/);
    expectAnswersMatchFills(await answersOf(second));
    expect(((await first.process.metrics()).extra['forwarded'] ?? 0) + ((await second.process.metrics()).extra['forwarded'] ?? 0)).toBeGreaterThan(0);
    await second.process.stop('SIGTERM');
  });

  it('restarted (on another port), it reads on from its checkpoint (not from the beginning) and answers as before', async () => {
    // Alone again after the second instance left: it holds every partition.
    await waitFor('the first instance to hold every partition', async () => ((await first.process.metrics()).extra['partitions'] === 6 ? true : undefined), 120_000, 500);
    await waitFor('its answers to be complete', async () => {
      for (const [taxpayer, sum] of sumFills(fills)) if ((await get(`${first.url}/accounts/${taxpayer}`)).body['fills'] !== sum.fills) return undefined;
      return true;
    }, 120_000, 1_000);
    const before = await answersOf(first);
    expect((await first.process.stop('SIGTERM')).code).toBe(0);

    // On another port: the store is found by group and host, not by port (it was kept per port,
    // and a restart on a new one rebuilt it from the topics and left the old one on disk).
    const restarted = await startPortfolio();
    expect(restarted.port).not.toBe(first.port);
    await waitFor('it to hold every partition', async () => ((await restarted.process.metrics()).extra['partitions'] === 6 ? true : undefined), 120_000, 500);
    const after = await answersOf(restarted);
    for (const [taxpayer, answer] of before) expect(after.get(taxpayer)).toEqual({ ...answer, served_by: restarted.url });
    // Nothing was read again: every partition started at its checkpoint, and no record was applied.
    // Each partition logs where it reads from once its start is resolved, which can come after its answers.
    const readingFrom = await waitFor(
      'every partition to say where it reads from',
      async () => {
        const lines = [...restarted.process.output().matchAll(/"topic":"(positions|fills)","partition":(\d),"offset":"(\d+)","msg":"reading from"/g)];
        return lines.length >= 12 ? lines : undefined;
      },
      60_000,
      500,
    );
    expect(readingFrom.filter((m) => m[3] === '0' && m[1] === 'positions')).toHaveLength(0);
    await sleep(2_000);
    expect((await restarted.process.metrics()).consumed).toBe(0);
    // The two instances' stores, and no third.
    expect(readdirSync(storeRoot).sort()).toEqual([`${group}-${hostname()}`, `${group}-${hostname()}-2`]);
    first = restarted;
  });
});
