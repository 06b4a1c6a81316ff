/**
 * Benchmark of the portfolio service on this machine (broker on it too); prints a table:
 *   1. latency: the whole order flow at --rate portfolio orders/s; for a sample of fills, the time
 *      from the fill's commit (seen by a read-committed consumer) until the API shows it, in the
 *      account's recent fills and in its position;
 *   2. GET /accounts/{id} requests/s over random accounts with autocannon (--connections);
 *   3. for each of --accounts (positions produced straight to the positions topic): the rebuild
 *      from the compacted topic (time, peak RSS), then a restart from the checkpoint (time until
 *      it serves again, RSS), and fill-publisher's restore of the same positions into its store and
 *      its restart from that store (time, peak RSS);
 *   4. reconcile's fills/s over --reconcile-fills fills, with each reader (the Kafka client's
 *      consumer and the lean reader) and 1 and one per CPU reading threads;
 *   5. burst: a netting window's burst of 2,000 fills applied to portfolio's store alone (no
 *      broker): decoding, the store's transaction, the answers for the watched accounts.
 * Uses KAFKA_BROKERS (scripts/bench.sh starts a local broker when unset).
 *   node scripts/bench-portfolio.ts [--parts latency,http,accounts,reconcile,burst] [--rate 2000] [--seconds 30]
 *     [--accounts 1000000,10000000] [--connections 50] [--reconcile-fills 2000000]
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { CommittedFollower, committedReaderOptions, createKafka, createLogger, decodeMessage, Fill, kafkaEnv, parseEnv, TOPICS, type Kafka } from '@tradeflow/shared';
import { answerFor } from '../services/portfolio/src/http.ts';
import { fillAsStored } from '../services/portfolio/src/records.ts';
import { PortfolioStore } from '../services/portfolio/src/store.ts';
import { resetTopics, topicEndOffsets } from './lib/admin.ts';
import { findPid, measureCpu } from './lib/cpu.ts';
import { INSTRUMENTS, instrumentPrices } from './lib/market.ts';
import { endChildrenOnSignals, freePort, ownChild, REPO, runScript, sleep, startService, waitFor, type ServiceProcess } from './lib/processes.ts';
import { fmt, loopDelay, mb, memoryPeaks, Report } from './lib/report.ts';

// Ctrl-C or kill ends the services and feeds it started too.
endChildrenOnSignals();

const { values } = parseArgs({
  options: {
    parts: { type: 'string', default: 'latency,http,accounts,reconcile,burst' },
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '30' },
    accounts: { type: 'string', default: '1000000,10000000' },
    connections: { type: 'string', default: '50' },
    'http-seconds': { type: 'string', default: '20' },
    'reconcile-fills': { type: 'string', default: '2000000' },
  },
});
const PARTS = new Set(values.parts.split(','));
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ACCOUNT_COUNTS = values.accounts.split(',').map(Number).filter((n) => n > 0);
const logger = createLogger('bench', 'error');
const env = parseEnv(kafkaEnv);
const kafka = createKafka(env, 'bench-portfolio', logger);
const figures = new Report();
const report = figures.add.bind(figures);
const baseEnv = { ...process.env, LOG_LEVEL: 'warn' } as Record<string, string>;
const storeRoot = mkdtempSync(join(tmpdir(), 'bench-portfolio-'));
const percentile = (sorted: readonly number[], p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!);
const ms = (x: number) => `${x.toFixed(1)} ms`;

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

async function startPortfolio(group: string, port: number): Promise<ServiceProcess> {
  return startService('portfolio', { env: { ...baseEnv, GROUP_ID: group, PORTFOLIO_PORT: String(port), PORTFOLIO_STORE_DIR: storeRoot }, readyTimeoutMs: 300_000 });
}

/** Peak RSS and what it is made of. */
async function peakRss(service: ServiceProcess): Promise<string> {
  return memoryPeaks(await service.metrics());
}

/**
 * Fills committed to `fills`, as the lean reader of committed records sees them (a long poll that
 * answers as soon as a fill is committed), with when it saw each. The topics were created afresh
 * for the part that uses it: every partition is read from its first offset. (The Kafka client's
 * consumer, used before, added tens of milliseconds to when a fill counted as committed:
 * docs/performance.md, "The benchmark's own reader".)
 */
async function watchFills(watched: (taxpayerId: number) => boolean, onFill: (fill: Fill, seenAt: number) => void): Promise<() => Promise<void>> {
  const lean = committedReaderOptions(env, 'bench-portfolio-fills');
  // Only the watched accounts' fills are decoded (told by their key, the taxpayer id): a netting
  // window's burst of 2,000 fills decoded here took this process's thread when it had to read the
  // event streams.
  const follower = new CommittedFollower<Buffer | null>(
    { ...lean, maxWaitMs: 200, makeRecord: (_topic, _partition, _offset, key, value) => (key !== null && watched(Number(key.toString('latin1'))) ? value : null) },
    async (batch) => {
      const seenAt = performance.now();
      for (const value of batch.records) {
        if (value === null) continue;
        const fill = decodeMessage(Fill, value);
        if (fill.ok) onFill(fill.value, seenAt);
      }
    },
  );
  follower.assign(new Map([[TOPICS.fills, new Map(Array.from({ length: env.TOPIC_PARTITIONS }, (_, p) => [p, 0] as const))]]));
  return () => follower.stop();
}

// 1. fill → visible at a steady feed.
if (PARTS.has('latency')) {
  process.stderr.write(`latency: the order flow at ${fmt(RATE)} orders/s for ${SECONDS} s...\n`);
  await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
  const group = `bench-pf-${Date.now()}`;
  const services = [
    await startService('tick-deserializer', { env: { ...baseEnv, GROUP_ID: `${group}-d` } }),
    await startService('order-matcher', { env: { ...baseEnv, GROUP_ID: `${group}-m` } }),
    await startService('fill-publisher', { env: { ...baseEnv, GROUP_ID: `${group}-f` } }),
  ];
  const port = await freePort();
  const portfolio = await startPortfolio(`${group}-p`, port);
  const api = `http://127.0.0.1:${port}`;
  const ticks = ownChild(spawn(process.execPath, [`${REPO}/scripts/queue-ticks.ts`, '--count', '100000000', '--rate', '500', '--quiet'], { env: baseEnv, stdio: 'ignore' }));
  await sleep(3_000);
  // Watched accounts: their event streams say when a fill is in the API (its recent fills, and
  // its position); a read-committed consumer of fills says when each was committed.
  const WATCHED = 200;
  const ACCOUNTS = 2_000;
  const committedAt = new Map<string, { at: number; ordinal: number; taxpayer: number }>();
  const perAccount = new Map<number, number>();
  const inFills: number[] = [];
  const inPosition: number[] = [];
  const pendingPosition = new Map<number, { ordinal: number; at: number }[]>();
  const streams: AbortController[] = [];
  const seenEarly = new Map<string, number>();
  for (let taxpayer = 1; taxpayer <= WATCHED; taxpayer++) {
    const controller = new AbortController();
    streams.push(controller);
    void (async () => {
      for (;;) {
        try {
          const res = await fetch(`${api}/accounts/${taxpayer}/events`, { signal: controller.signal });
          const reader = res.body!.getReader();
          const decoder = new TextDecoder();
          let text = '';
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            const now = performance.now();
            text += decoder.decode(value, { stream: true });
            let cut: number;
            while ((cut = text.indexOf('\n\n')) >= 0) {
              const event = text.slice(0, cut);
              text = text.slice(cut + 2);
              const data = event.split('\ndata: ')[1];
              if (data === undefined) continue;
              const answer = JSON.parse(data) as { fills?: number; new_fills?: string[] };
              for (const id of answer.new_fills ?? []) {
                const c = committedAt.get(id);
                if (c === undefined) seenEarly.set(id, now);
                else inFills.push(now - c.at);
              }
              const waiting = pendingPosition.get(taxpayer) ?? [];
              while (waiting.length > 0 && (answer.fills ?? 0) >= waiting[0]!.ordinal) inPosition.push(now - waiting.shift()!.at);
            }
          }
        } catch {
          if (controller.signal.aborted) return;
          await sleep(100);
        }
      }
    })();
  }
  const stopWatching = await watchFills((taxpayerId) => taxpayerId >= 1 && taxpayerId <= WATCHED, (fill, seenAt) => {
    const ordinal = (perAccount.get(fill.taxpayer_id) ?? 0) + 1;
    perAccount.set(fill.taxpayer_id, ordinal);
    const early = seenEarly.get(fill.fill_id);
    // In the API before this consumer saw it committed: visible at once.
    if (early !== undefined) inFills.push(Math.max(0, early - seenAt));
    else committedAt.set(fill.fill_id, { at: seenAt, ordinal, taxpayer: fill.taxpayer_id });
    const waiting = pendingPosition.get(fill.taxpayer_id) ?? [];
    waiting.push({ ordinal, at: seenAt });
    pendingPosition.set(fill.taxpayer_id, waiting);
  });
  const pids = new Map<string, number>();
  for (const service of [...services, portfolio]) if (service.child.pid !== undefined) pids.set(service.name, service.child.pid);
  const broker = findPid('kafka.Kafka');
  if (broker !== undefined) pids.set('broker', broker);
  const cpu = measureCpu(pids);
  const started = performance.now();
  await runScript('queue-orders.ts', ['--count', String(RATE * SECONDS), '--rate', String(RATE), '--accounts', String(ACCOUNTS), '--quiet'], { LOG_LEVEL: 'error' });
  const fed = (performance.now() - started) / 1000;
  const used = cpu.stop();
  await sleep(5_000);
  await stopWatching();
  for (const controller of streams) controller.abort();
  ticks.kill('SIGTERM');
  inFills.sort((a, b) => a - b);
  inPosition.sort((a, b) => a - b);
  report(`feed`, `${fmt((RATE * SECONDS) / fed)} orders/s`, `${fmt(RATE * SECONDS)} orders in ${fed.toFixed(1)} s`);
  report('fill committed → in the API (its recent fills)', `p50 ${ms(percentile(inFills, 0.5))}, p99 ${ms(percentile(inFills, 0.99))}`, `${fmt(inFills.length)} fills of ${WATCHED} watched accounts (of ${fmt(ACCOUNTS)}), seen in their event streams`);
  report('fill committed → in the API (its position)', `p50 ${ms(percentile(inPosition, 0.5))}, p99 ${ms(percentile(inPosition, 0.99))}`, `${fmt(inPosition.length)} fills; through fill-publisher's positions stage (a transaction more)`);
  if (used !== undefined) {
    report('CPU while feeding', `machine ${used.machineBusyPct.toFixed(0)} % busy`, `of one core: ${[...used.processPct].map(([name, pct]) => `${name} ${pct.toFixed(0)} %`).join(', ')}`);
  }
  const timings = (await portfolio.metrics()).timings;
  const delay = timings?.['loop.delay'];
  if (delay !== undefined) {
    report('portfolio event loop delay', ...loopDelay(delay));
  }
  const apply = timings?.['apply'];
  if (apply !== undefined) {
    report('portfolio applying a fetch', `p50 ${ms(apply.p50Ms)} / p99 ${ms(apply.p99Ms)} / max ${ms(apply.maxMs)}`, `from a fetch handed over to its events written, over its last ${fmt(Math.min(apply.count, 4096))} fetches`);
  }
  report('portfolio memory (feed)', await peakRss(portfolio));
  for (const s of services) await s.stop();
  await portfolio.stop();
}

// 2. GET /accounts/{id} over random accounts.
if (PARTS.has('http')) {
  process.stderr.write('http: GET /accounts/{id} with autocannon...\n');
  await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
  const accounts = 100_000;
  await producePositions(accounts);
  const port = await freePort();
  const portfolio = await startPortfolio(`bench-http-${Date.now()}`, port);
  await waitFor('the accounts', async () => ((await portfolio.metrics()).lag === 0 && (await fetch(`http://127.0.0.1:${port}/accounts/${accounts}`)).ok ? true : undefined), 300_000, 500);
  await producePrices();
  await sleep(2_000);
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: Number(values.connections),
    duration: Number(values['http-seconds']),
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, path: `/accounts/${1 + Math.floor(Math.random() * accounts)}` }) }],
  });
  report('GET /accounts/{id}, random accounts (autocannon, in this process)', `${fmt(result.requests.average)} req/s`, `${values.connections} connections, ${values['http-seconds']} s, ${fmt(accounts)} accounts; latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms; non-2xx ${result.non2xx}, errors ${result.errors}`);
  // wrk (Debian's, when installed): a load generator in C, so less of the two cores goes to it.
  const wrk = findExecutable('wrk');
  if (wrk !== undefined) {
    const script = join(storeRoot, 'random-accounts.lua');
    writeFileSync(script, `math.randomseed(os.time())\nrequest = function() return wrk.format("GET", "/accounts/" .. math.random(1, ${accounts})) end\n`);
    const out = await new Promise<string>((resolve) => {
      const child = ownChild(spawn(wrk, ['-t2', `-c${values.connections}`, `-d${values['http-seconds']}s`, '--latency', '-s', script, `http://127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] }));
      let text = '';
      child.stdout.on('data', (c: Buffer) => (text += c.toString()));
      child.once('exit', () => resolve(text));
    });
    const rate = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
    const p50 = /50%\s+(\S+)/.exec(out)?.[1];
    const p99 = /99%\s+(\S+)/.exec(out)?.[1];
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? '0';
    report('GET /accounts/{id}, random accounts (wrk)', `${fmt(Number(rate))} req/s`, `2 threads, ${values.connections} connections, ${values['http-seconds']} s; latency p50 ${p50}, p99 ${p99}; non-2xx ${non2xx}`);
  }
  await portfolio.stop();
}

/** Account positions straight to the positions topic, keyed (and partitioned) as fill-publisher writes them. */
async function producePositions(count: number): Promise<void> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const started = performance.now();
  const symbols = INSTRUMENTS.map((i) => i.symbol);
  const chunk = 5_000;
  let inFlight: Promise<unknown>[] = [];
  for (let first = 1; first <= count; first += chunk) {
    const messages = [];
    for (let id = first; id < first + chunk && id <= count; id++) {
      const a = symbols[id % symbols.length]!;
      const b = symbols[(id * 7) % symbols.length]!;
      messages.push({ key: String(id), value: JSON.stringify({ taxpayer_id: id, shares: a === b ? { [a]: 1.5 } : { [a]: 1.5, [b]: 2.25 }, cash: -321.5, fills: 2, timestamp: 1_796_000_000 }) });
    }
    inFlight.push(producer.send({ topic: TOPICS.positions, acks: 1, messages }));
    if (inFlight.length >= 8) {
      await Promise.all(inFlight);
      inFlight = [];
    }
    if ((first - 1) % 500_000 === 0) process.stderr.write(`  positions: ${fmt(first - 1)}/${fmt(count)}\n`);
  }
  await Promise.all(inFlight);
  await producer.disconnect();
  process.stderr.write(`  ${fmt(count)} positions in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
}

async function producePrices(): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  const now = Date.now() / 1000;
  await producer.send({ topic: TOPICS.prices, acks: -1, messages: instrumentPrices(now) });
  await producer.disconnect();
}

// 3. 1 million and 10 million accounts: rebuild, restart, fill-publisher's restore.
if (PARTS.has('accounts')) {
  for (const count of ACCOUNT_COUNTS) {
    process.stderr.write(`accounts: ${fmt(count)}...\n`);
    await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
    await producePrices();
    await producePositions(count);
    const group = `bench-acc-${Date.now()}`;
    const port = await freePort();
    const last = `http://127.0.0.1:${port}/accounts/${count}`;
    let started = performance.now();
    let portfolio = await startPortfolio(group, port);
    await waitFor('every account', async () => ((await portfolio.metrics()).extra['accounts'] === count && (await fetch(last)).ok ? true : undefined), 3_600_000, 1_000);
    report(`${fmt(count)} accounts: rebuild from the positions topic`, `${((performance.now() - started) / 1000).toFixed(1)} s`, await peakRss(portfolio));
    await portfolio.stop();
    started = performance.now();
    portfolio = await startPortfolio(group, port);
    await waitFor('it to serve again', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/accounts/${1 + Math.floor(Math.random() * count)}`).catch(() => undefined);
      return res?.ok === true && (await portfolio.metrics()).extra['partitions'] === env.TOPIC_PARTITIONS ? true : undefined;
    }, 600_000, 100);
    const restart = (performance.now() - started) / 1000;
    await sleep(5_000);
    const m = await portfolio.metrics();
    report(`${fmt(count)} accounts: restart from the checkpoint → serving`, `${restart.toFixed(1)} s`, `records read again ${fmt(m.consumed)}; RSS ${mb(m.rssBytes)}, ${memoryPeaks(m)}`);
    await portfolio.stop();

    // fill-publisher restores the positions of every account it holds from the same topic (its
    // changelog) into its store, then a restart opens the store.
    const stateDir = join(storeRoot, `fill-publisher-${count}`);
    for (const [step, seed] of [['restore from the positions topic into its store', 4], ['restart: its store opened', 5]] as const) {
      started = performance.now();
      const fillPublisher = await startService('fill-publisher', { env: { ...baseEnv, GROUP_ID: `${group}-fp`, FILL_PUBLISHER_STATE_DIR: stateDir }, readyTimeoutMs: 300_000 });
      const before = (await fillPublisher.metrics()).consumed;
      await runScript('queue-fills.ts', ['--count', '60', '--accounts', String(count), '--seed', String(seed), '--quiet'], { LOG_LEVEL: 'error' });
      let outcome = '';
      for (;;) {
        if (fillPublisher.child.exitCode !== null || fillPublisher.child.signalCode !== null) {
          const oom = /heap out of memory|Ineffective mark-compacts/.test(fillPublisher.output());
          outcome = `it died (${fillPublisher.child.signalCode ?? `exit ${fillPublisher.child.exitCode}`}${oom ? ', JavaScript heap out of memory' : ''}) after ${((performance.now() - started) / 1000).toFixed(1)} s`;
          break;
        }
        const m = await fillPublisher.metrics().catch(() => undefined);
        if (m !== undefined && m.consumed - before >= 60) {
          outcome = `${((performance.now() - started) / 1000).toFixed(1)} s, ${memoryPeaks(m)}`;
          break;
        }
        await sleep(250);
      }
      report(`${fmt(count)} accounts: fill-publisher, ${step}`, outcome, 'from its start until 60 fills produced after it are applied');
      if (fillPublisher.child.exitCode === null) await fillPublisher.stop('SIGTERM');
    }
  }
}

// 4. reconcile's fills/s.
if (PARTS.has('reconcile')) {
  const count = Number(values['reconcile-fills']);
  process.stderr.write(`reconcile: ${fmt(count)} fills...\n`);
  await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
  await runScript('queue-fills.ts', ['--count', String(count), '--accounts', '100000', '--seed', '6', '--quiet'], { LOG_LEVEL: 'error' });
  const held = await topicEndOffsets(kafka, TOPICS.fills);
  // Each reader (the Kafka client's consumer, then the lean reader, the default) with one reading
  // thread, then one per CPU (the default), over the same topic.
  for (const [reader, workers] of (['kafkajs', 'wire'] as const).flatMap((r) => [...new Set([1, availableParallelism()])].map((w) => [r, w] as const))) {
    const child = ownChild(spawn(process.execPath, [`${REPO}/scripts/reconcile.ts`, '--no-influx'], { env: { ...baseEnv, RECONCILE_WORKERS: String(workers), RECONCILE_READER: reader }, stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await new Promise((resolve) => child.once('exit', resolve));
    const line = /fills checked +([\d,]+) \(([\d,]+) records read in ([\d.]+) s, ([\d,]+)\/s; ([\d,]+)\/s from the first/.exec(out);
    report(`reconcile, ${reader === 'wire' ? 'lean reader' : 'Kafka client'}, ${workers} reading thread${workers === 1 ? '' : 's'} (fills topic, no InfluxDB)`, line === null ? 'failed' : `${line[4]} fills/s`, line === null ? out.slice(0, 200) : `${line[1]} fills in ${line[3]} s from its start, ${line[5]}/s from the first record to the last (topic holds ${fmt(held)}); positions compared too (no snapshots here: each account is a difference)`);
  }
}

// 5. A netting window's burst applied to the store alone (no broker): what portfolio does with the
// fetch that brings it, measured without the rest of the order flow on the cores.
if (PARTS.has('burst')) {
  const accounts = 2_000;
  const store = PortfolioStore.open({ path: mkdtempSync(join(storeRoot, 'burst-')), recentFills: 50 });
  const symbols = INSTRUMENTS.map((i) => i.symbol).slice(0, 8);
  let sequence = 0;
  const fillBytes = (taxpayer: number) =>
    Buffer.from(JSON.stringify({ taxpayer_id: taxpayer, portfolio_order_id: randomUUID(), component_order_id: `${randomUUID()}/VTI`, market_order_id: `m-${sequence}`, execution_id: `e-${sequence}`, fill_id: `f-${sequence++}-${taxpayer}`, symbol: 'VTI', order_type: 'BUY', filled_amount: 1000.5, filled_shares: 4.123456, filled_price: 242.66, delta_shares_position: 4.123456, delta_cash_position: -1000.5, timestamp: 1_796_000_000.123, order_timestamp: 1_796_000_000.001 }));
  const snapshot = (taxpayer: number) => Buffer.from(JSON.stringify({ taxpayer_id: taxpayer, shares: Object.fromEntries(symbols.map((symbol, i) => [symbol, 10.123456 * (i + 1)])), cash: -12_345.67, fills: 50, timestamp: 1_796_000_000.2 }));
  await store.apply({
    prices: symbols.map((symbol) => ({ symbol, exchange: 'NYSE', bid: 100, ask: 100.5, timestamp: 1_796_000_000 })),
    positions: Array.from({ length: accounts }, (_, i) => ({ value: { taxpayer_id: i + 1, fills: 50 }, bytes: snapshot(i + 1) })),
    offsets: [],
  });
  const ownership = { self: 'bench', partitions: env.TOPIC_PARTITIONS, holds: () => true, ownerOf: () => undefined, refresh: async () => undefined, lag: () => ({ positions: 0, fills: 0 }) };
  const burst = () => Array.from({ length: accounts }, (_, i) => fillBytes(1 + ((i * 7_919) % accounts)));
  // Every account's ring full first (50 fills each), as in a store that has run a while.
  const decodedBurst = () =>
    burst().flatMap((bytes) => {
      const fill = decodeMessage(Fill, bytes);
      return fill.ok ? [{ value: fill.value, bytes }] : [];
    });
  for (let round = 0; round < 50; round++) await store.apply({ fills: decodedBurst(), offsets: [] });
  const decodeMs: number[] = [];
  const storeMs: number[] = [];
  const answerMs: number[] = [];
  for (let round = 0; round < 60; round++) {
    const records = burst();
    const t0 = performance.now();
    const fills = [];
    for (const bytes of records) {
      const fill = fillAsStored(bytes);
      if (fill.ok) fills.push({ value: fill.value, bytes });
    }
    const t1 = performance.now();
    await store.apply({ fills, offsets: [{ topic: TOPICS.fills, partition: 0, next: BigInt(sequence) }] });
    const t2 = performance.now();
    for (let taxpayer = 1; taxpayer <= 200; taxpayer++) JSON.stringify({ ...answerFor(store, ownership, taxpayer), new_fills: [] });
    const t3 = performance.now();
    if (round >= 10) {
      decodeMs.push(t1 - t0);
      storeMs.push(t2 - t1);
      answerMs.push(t3 - t2);
    }
  }
  for (const list of [decodeMs, storeMs, answerMs]) list.sort((a, b) => a - b);
  report(
    `a burst of ${fmt(accounts)} fills of ${fmt(accounts)} accounts, alone`,
    `decode ${ms(percentile(decodeMs, 0.5))}, store ${ms(percentile(storeMs, 0.5))}, answers ${ms(percentile(answerMs, 0.5))}`,
    `medians of 50 bursts; the store holding 50 fills of each account; answers for 200 watched accounts (a netting window's close brings such a burst in one transaction: docs/performance.md)`,
  );
  await store.close();
}

figures.print();
rmSync(storeRoot, { recursive: true, force: true });
process.exit(0);
