/**
 * Benchmark of the order flow on this machine (broker on it too), with live prices from a tick
 * feed through tick-deserializer. First a warm-up (--warmup seconds of 1,000 orders/s through the
 * whole pipeline, so a freshly started broker has compiled its hot paths), then prints a table:
 *   1. throughput: a backlog of portfolio orders drained by order-matcher + fill-publisher,
 *      component orders/s from the first fill to the last, and every component filled once;
 *   2. order→fill latency p50/p99/p99.9 (fill seen by a consumer − order timestamp) at a fixed
 *      rate of portfolio orders, then at a higher one, with the lag when each feed ended and
 *      whether the pipeline kept up (less than a second's worth of components unfilled then, and
 *      all filled within 2 s);
 *   3. with --ramp N, more phases at the last rate + N, + 2N, ... until one does not keep up;
 *      the highest rate kept up, with its latency;
 *   peak memory (RSS) of each service.
 * Uses KAFKA_BROKERS (scripts/bench.sh starts a local broker when unset).
 *   node scripts/bench-orders.ts [--backlog 40000] [--rates 2000,6000] [--seconds 30] [--warmup 30] [--hops] [--priority 1|2] [--ramp 1000] [--reader wire|kafkajs] [--instances N] [--service-logs DIR]
 * --hops also splits the latency by hop (Kafka record timestamps of the component order, its
 * execution and its fill), at the cost of reading two more topics. SERVICE_NODE_OPTIONS is given
 * to order-matcher and fill-publisher as NODE_OPTIONS (a heap cap, say), not to this process.
 * --service-logs DIR keeps their logs at info in DIR (what a rebalance did, say).
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { CommittedFollower, committedReaderOptions, createKafka, createLogger, kafkaEnv, parseEnv, TIMING_WINDOW, TOPICS, type Fill } from '@tradeflow/shared';
import { splitPortfolioOrder } from '../services/order-matcher/src/split.ts';
import { findPid, measureCpu, type CpuUse } from './lib/cpu.ts';
import { fmt, loopDelay, peakMemory, Report } from './lib/report.ts';
import { resetTopics } from './lib/admin.ts';
import { generateOrders } from './lib/orders.ts';
import { endChildrenOnSignals, ownChild, REPO, runScript, sleep, startService, type ServiceProcess } from './lib/processes.ts';

// Ctrl-C or kill ends the services and feeds it started too.
endChildrenOnSignals();

const { values } = parseArgs({
  options: {
    backlog: { type: 'string', default: '40000' },
    rates: { type: 'string', default: '2000,6000' },
    seconds: { type: 'string', default: '30' },
    'tick-rate': { type: 'string', default: '500' },
    /** Seconds of orders at 1,000/s through the pipeline first, so the broker's JIT has settled. */
    warmup: { type: 'string', default: '30' },
    /** Also read orders.components and executions to split the latency by hop (adds load). */
    hops: { type: 'boolean', default: false },
    /** 1 or 2: every order of that priority (default: the usual mix, 70 % priority 1). */
    priority: { type: 'string' },
    /** After the listed rates, raise the rate by this many orders/s while the pipeline keeps up. */
    ramp: { type: 'string', default: '0' },
    /** What reads the fills (and with --hops components and executions): wire (the lean reader) or kafkajs (the client's consumer). */
    reader: { type: 'string', default: 'wire' },
    /** Instances of order-matcher and of fill-publisher, each in one group (with TRANSACTIONAL_PRODUCER=slot, TRANSACTION_SLOTS decides how they share). */
    instances: { type: 'string', default: '1' },
    /** Keep order-matcher's and fill-publisher's logs, at info, in this directory (one file per process started); otherwise warn, in memory. */
    'service-logs': { type: 'string' },
  },
});
const BACKLOG = Number(values.backlog);
const RATES = values.rates.split(',').map(Number).filter((r) => r > 0);
const SECONDS = Number(values.seconds);
const RAMP = Number(values.ramp);
const INSTANCES = Number(values.instances);
if (values.reader !== 'wire' && values.reader !== 'kafkajs') throw new Error(`--reader must be wire or kafkajs, not ${values.reader}`);
if (!Number.isInteger(INSTANCES) || INSTANCES < 1) throw new Error(`--instances must be a whole number >= 1, not ${values.instances}`);
/**
 * A phase kept up when, as its feed ended, less than a second's worth of its components was
 * still unfilled, and every one was filled within KEPT_UP_SECONDS.
 */
const KEPT_UP_SECONDS = 2;
const PRIORITY = values.priority === undefined ? undefined : Number(values.priority);
if (PRIORITY !== undefined && PRIORITY !== 1 && PRIORITY !== 2) throw new Error(`--priority must be 1 or 2, not ${values.priority}`);
/** queue-orders options shared by every feed. */
const feedArgs = ['--accounts', '10000', '--quiet', ...(PRIORITY === undefined ? [] : ['--priority', String(PRIORITY)])];

const logger = createLogger('bench', 'error');
const env = parseEnv(kafkaEnv);
const kafka = createKafka(env, 'bench', logger);
const figures = new Report();
const report = figures.add.bind(figures);
const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
/** [p, value] for each percentile p of `xs`. */
function percentiles(xs: readonly number[], ps: readonly number[]): [number, number][] {
  const sorted = [...xs].sort((a, b) => a - b);
  return ps.map((p) => [p, percentile(sorted, p)]);
}

/**
 * Who takes the CPU while a phase runs: the machine (busy share of all cores) and each process
 * (share of one core). The broker is found when this machine runs it (scripts/infra/kafka.sh).
 */
function cpuRow(what: string, use: CpuUse | undefined, components: number): void {
  if (use === undefined) return;
  const parts = [...use.processPct].map(([name, pct]) => `${name} ${pct.toFixed(0)} %`);
  report(`  CPU ${what}`, `machine ${use.machineBusyPct.toFixed(0)} % busy`, `of one core: ${parts.join(', ')}`);
  report(`    machine CPU per 1,000 components`, `${((use.machineBusySeconds / components) * 1000).toFixed(2)} s`, `${use.machineBusySeconds.toFixed(1)} CPU-s (all processes, broker included) for ${fmt(components)} components`);
}
const cpuPids = new Map<string, number>();
const brokerPort = env.KAFKA_BROKERS[0]?.split(':')[1];
const brokerPid = brokerPort === undefined ? undefined : findPid(`tradeflow-kafka-${brokerPort}/server.properties`);
if (brokerPid !== undefined) cpuPids.set('broker', brokerPid);

await resetTopics(kafka, logger, env.TOPIC_PARTITIONS);
const SERVICE_LOGS = values['service-logs'];
const baseEnv = { ...process.env, LOG_LEVEL: SERVICE_LOGS === undefined ? 'warn' : 'info' } as Record<string, string>;
/** Numbers the log files of --service-logs: <service>-<n>.log in the order the processes started. */
let servicesStarted = 0;
// Node options for the services only (a heap cap, say), not for this process or the feeds.
const serviceNodeOptions = process.env['SERVICE_NODE_OPTIONS'];
const run = `bench-${Date.now()}`;
const deserializer = await startService('tick-deserializer', { env: { ...baseEnv, GROUP_ID: `${run}-d` } });
const ticks = ownChild(spawn(process.execPath, [`${REPO}/scripts/queue-ticks.ts`, '--count', '1000000000', '--rate', values['tick-rate'], '--quiet'], {
  env: { ...baseEnv, LOG_LEVEL: 'error' },
  stdio: 'ignore',
}));
if (deserializer.child.pid !== undefined) cpuPids.set('tick-deserializer', deserializer.child.pid);
if (ticks.pid !== undefined) cpuPids.set('tick feed', ticks.pid);
cpuPids.set('benchmark reader', process.pid);
await sleep(3_000);

/** Which phase a component order belongs to, and every fill seen, as it arrives. */
const phaseOf = new Map<string, string>();
const fillsSeen = new Map<string, number>();
const latencies = new Map<string, { all: number[]; p1: number[]; p2: number[] }>();
let firstFillAt = 0;
let lastFillAt = 0;
/**
 * Where the time goes, per priority-1 component order: Kafka record timestamps (set by each
 * producer when it sends) of the component order (split), its execution (match) and its fill.
 */
const componentAt = new Map<string, number>();
const executionAt = new Map<string, number>();
const hops = new Map<string, { split: number[]; match: number[]; fill: number[]; read: number[] }>();
/** One record the benchmark's reader saw: from fills (or, with --hops, components and executions). */
function onRecord(topic: string, value: Buffer, timestamp: number, now: number): void {
  if (topic === TOPICS.orderComponents) {
    const component = JSON.parse(value.toString()) as { component_order_id: string; priority: number };
    if (component.priority === 1) componentAt.set(component.component_order_id, timestamp);
    return;
  }
  if (topic === TOPICS.executions) {
    const execution = JSON.parse(value.toString()) as { component_order_id: string; execution_id?: string };
    if (execution.execution_id?.startsWith('blk:') !== true) executionAt.set(execution.component_order_id, timestamp);
    return;
  }
  const fill = JSON.parse(value.toString()) as Fill;
  const phase = phaseOf.get(fill.component_order_id) ?? 'unknown';
  fillsSeen.set(phase, (fillsSeen.get(phase) ?? 0) + 1);
  if (phase === 'backlog') {
    if (firstFillAt === 0) firstFillAt = performance.now();
    lastFillAt = performance.now();
  }
  const l = latencies.get(phase) ?? { all: [], p1: [], p2: [] };
  const ms = (now - (fill.order_timestamp ?? now)) * 1000;
  l.all.push(ms);
  (fill.execution_id.startsWith('blk:') ? l.p2 : l.p1).push(ms);
  latencies.set(phase, l);
  const componentTs = componentAt.get(fill.component_order_id);
  const executionTs = executionAt.get(fill.component_order_id);
  if (componentTs !== undefined && executionTs !== undefined && fill.order_timestamp !== undefined) {
    const h = hops.get(phase) ?? { split: [], match: [], fill: [], read: [] };
    h.split.push(componentTs - fill.order_timestamp * 1000);
    h.match.push(executionTs - componentTs);
    h.fill.push(timestamp - executionTs);
    h.read.push(now * 1000 - timestamp);
    hops.set(phase, h);
    componentAt.delete(fill.component_order_id);
    executionAt.delete(fill.component_order_id);
  }
}

const readTopics = values.hops ? [TOPICS.fills, TOPICS.orderComponents, TOPICS.executions] : [TOPICS.fills];
/**
 * The reader that says when a fill is readable: the lean reader of committed records (--reader
 * wire, the default; each fetch's records decoded in place as it arrives), or the Kafka client's
 * consumer (--reader kafkajs). The latter took 8-16 % of a core here and its fetch loop added tens
 * of milliseconds to when a committed fill counted as seen (docs/performance.md).
 */
let stopReader: () => Promise<void>;
if (values.reader === 'kafkajs') {
  const consumer = kafka.consumer({ groupId: `${run}-reader`, maxWaitTimeInMs: 20 });
  await consumer.connect();
  await consumer.subscribe({ topics: readTopics, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: 18,
    eachBatch: async ({ batch }) => {
      const now = Date.now() / 1000;
      for (const message of batch.messages) onRecord(batch.topic, message.value!, Number(message.timestamp), now);
    },
  });
  stopReader = () => consumer.disconnect();
} else {
  const lean = committedReaderOptions(env, 'bench-reader');
  const follower = new CommittedFollower<{ topic: string; value: Buffer; timestamp: number }>(
    { ...lean, maxWaitMs: 20, makeRecord: (topic, _partition, _offset, _key, value, timestamp) => ({ topic, value: value!, timestamp }) },
    async (batch) => {
      const now = Date.now() / 1000;
      for (const record of batch.records) onRecord(record.topic, record.value, record.timestamp, now);
    },
  );
  // The topics were created afresh above: every partition from its first offset.
  follower.assign(new Map(readTopics.map((topic) => [topic, new Map(Array.from({ length: env.TOPIC_PARTITIONS }, (_, p) => [p, 0] as const))])));
  stopReader = () => follower.stop();
}

function expect(phase: string, seed: number, count: number): number {
  let components = 0;
  for (const message of generateOrders({ count, seed, accounts: 10_000, priority: PRIORITY as 1 | 2 | undefined, timestamp: () => 0 })) {
    for (const component of splitPortfolioOrder(message.order as never)) {
      phaseOf.set(component.component_order_id, phase);
      components++;
    }
  }
  return components;
}

/** Peak RSS, and the peaks of what it is made of. */
async function peak(service: ServiceProcess): Promise<[string, string]> {
  return peakMemory(await service.metrics());
}

/**
 * INSTANCES of order-matcher and of fill-publisher for this run (same groups every time: they
 * resume where they stopped), as [matchers, fill publishers].
 */
const startPipeline = async (): Promise<[ServiceProcess[], ServiceProcess[]]> => {
  const each = (name: string, group: string) =>
    Promise.all(
      Array.from({ length: INSTANCES }, () =>
        startService(name, {
          env: { ...baseEnv, GROUP_ID: group, ...(serviceNodeOptions === undefined ? {} : { NODE_OPTIONS: serviceNodeOptions }) },
          ...(SERVICE_LOGS === undefined ? {} : { logFile: `${SERVICE_LOGS}/${name}-${++servicesStarted}.log` }),
        }),
      ),
    );
  return Promise.all([each('order-matcher', `${run}-m`), each('fill-publisher', `${run}-f`)]);
};
/** Throws, with the end of its output, when one of `services` has exited: the waits for fills would not end. */
const running = (services: readonly ServiceProcess[]) => {
  for (const service of services) {
    const { exitCode, signalCode } = service.child;
    if (exitCode !== null || signalCode !== null) {
      const tail = service.output().split('\n').filter((line) => line.trim() !== '').slice(-15).join('\n');
      throw new Error(`${service.name} exited (${signalCode ?? `code ${exitCode}`}) during the benchmark; the end of its output:\n${tail}`);
    }
  }
};
/** Waits until `done`, for at most 15 minutes, failing at once when one of `services` exits. */
const whileRunning = async (services: readonly ServiceProcess[], what: string, done: () => boolean) => {
  const deadline = Date.now() + 900_000;
  while (!done()) {
    running(services);
    if (Date.now() > deadline) throw new Error(`timed out after 900 s waiting for ${what}`);
    await sleep(100);
  }
};
/** A service's name in the table: with several instances, numbered. */
const label = (name: string, i: number) => (INSTANCES === 1 ? name : `${name} #${i + 1}`);

// 0. Warm-up: a freshly started broker compiles its hot paths for about a minute (more than a core
// of CPU at first), which would otherwise land on the first figures. The services then stop, so the
// backlog below still meets services that start on it (they resume from their committed offsets).
const WARMUP_SECONDS = Number(values.warmup);
if (WARMUP_SECONDS > 0) {
  process.stderr.write(`warm-up: 1,000 portfolio orders/s for ${WARMUP_SECONDS} s...\n`);
  const warmupComponents = expect('warmup', 99, 1_000 * WARMUP_SECONDS);
  const warming = (await startPipeline()).flat();
  await runScript('queue-orders.ts', ['--count', String(1_000 * WARMUP_SECONDS), '--seed', '99', '--rate', '1000', ...feedArgs], { LOG_LEVEL: 'error' });
  await whileRunning(warming, 'every warm-up component filled', () => (fillsSeen.get('warmup') ?? 0) >= warmupComponents);
  await Promise.all(warming.map((service) => service.stop()));
}

// 1. Throughput: drain a backlog.
process.stderr.write(`throughput: a backlog of ${fmt(BACKLOG)} portfolio orders...\n`);
const backlogComponents = expect('backlog', 101, BACKLOG);
await runScript('queue-orders.ts', ['--count', String(BACKLOG), '--seed', '101', ...feedArgs], { LOG_LEVEL: 'error' });
const [matchers, fillPublishers] = await startPipeline();
const pipeline = [...matchers, ...fillPublishers];
for (const [i, s] of matchers.entries()) if (s.child.pid !== undefined) cpuPids.set(label('order-matcher', i), s.child.pid);
for (const [i, s] of fillPublishers.entries()) if (s.child.pid !== undefined) cpuPids.set(label('fill-publisher', i), s.child.pid);
const drainCpu = measureCpu(cpuPids);
const drainStarted = performance.now();
/**
 * When every instance first held partitions of each of its groups (its 'assigned:<group>' figures
 * all above 0) and how many backlog fills had been seen then. The instances join one after another
 * while the backlog drains (the broker starts a group's first generation at once), so the group
 * rebalances during the drain: the drain after this moment is what the instances do together.
 */
let settled: { at: number; fills: number } | undefined;
const settling = (async () => {
  // order-matcher's one group, fill-publisher's two (its fill and positions stages).
  const groups = (service: string) => (service === 'fill-publisher' ? [`${run}-f-fill`, `${run}-f-positions`] : [`${run}-m`]);
  while (settled === undefined && (fillsSeen.get('backlog') ?? 0) < backlogComponents) {
    const snapshots = await Promise.all(pipeline.map((s) => s.metrics().catch(() => undefined)));
    if (snapshots.every((m, i) => groups(pipeline[i]!.name).every((group) => (m?.extra[`assigned:${group}`] ?? 0) > 0))) settled = { at: performance.now(), fills: fillsSeen.get('backlog') ?? 0 };
    else await sleep(100);
  }
})();
await whileRunning(pipeline, 'every backlog component filled', () => (fillsSeen.get('backlog') ?? 0) >= backlogComponents);
await settling;
const drainCpuUse = drainCpu.stop();
await sleep(1_000);
const drainSeconds = (lastFillAt - firstFillAt) / 1000;
report(`order-matcher + fill-publisher${INSTANCES === 1 ? '' : ` (${INSTANCES} instances each)`}, backlog drain`, `${fmt(backlogComponents / drainSeconds)} component orders/s`, `${fmt(BACKLOG)} portfolio orders = ${fmt(backlogComponents)} components in ${drainSeconds.toFixed(1)} s (first fill to last)`);
if (INSTANCES > 1) {
  // Only worth a figure when most of the backlog was left once every instance had its partitions,
  // and it took a second or more (a small backlog's fills arrive in a few commits: no rate to speak of).
  const left = settled === undefined ? 0 : backlogComponents - settled.fills;
  const seconds = settled === undefined ? 0 : (lastFillAt - Math.max(settled.at, firstFillAt)) / 1000;
  report(
    '  once every instance had partitions',
    left >= backlogComponents / 2 && seconds >= 1 ? `${fmt(left / seconds)} component orders/s` : 'n/a',
    settled === undefined ? 'not every instance held partitions before the backlog was drained' : `${fmt(left)} components after the group settled ${((settled.at - drainStarted) / 1000).toFixed(1)} s after the start, in ${seconds.toFixed(1)} s`,
  );
}
cpuRow('from start to the last fill', drainCpuUse, backlogComponents);
report('fills / components (backlog)', `${fmt(fillsSeen.get('backlog') ?? 0)} / ${fmt(backlogComponents)}`, (fillsSeen.get('backlog') ?? 0) === backlogComponents ? 'exactly once' : 'MISMATCH');

// 2. Latency at fixed rates, then (--ramp) at rising ones while the pipeline keeps up.
interface PhaseResult {
  readonly rate: number;
  readonly componentsPerSecond: number;
  readonly keptUp: boolean;
  readonly p1: string;
}
async function runPhase(rate: number, seed: number): Promise<PhaseResult> {
  const phase = `rate-${rate}`;
  const count = rate * SECONDS;
  process.stderr.write(`latency: ${fmt(rate)} portfolio orders/s for ${SECONDS} s...\n`);
  const components = expect(phase, seed, count);
  // Transactions each service had timed before this feed: its timing window may reach back into them.
  const timedBefore = (await Promise.all(pipeline.map((s) => s.metrics()))).map((s) => s.timings?.['txn']?.count ?? 0);
  const started = performance.now();
  const feedCpu = measureCpu(cpuPids);
  await runScript('queue-orders.ts', ['--count', String(count), '--seed', String(seed), '--rate', String(rate), ...feedArgs], { LOG_LEVEL: 'error' });
  const feedSeconds = (performance.now() - started) / 1000;
  const feedCpuUse = feedCpu.stop();
  const snapshots = await Promise.all(pipeline.map((s) => s.metrics()));
  const lagOf = (service: string) => snapshots.filter((s) => s.service === service).reduce((sum, s) => sum + s.lag, 0);
  const lagAtEnd = components - (fillsSeen.get(phase) ?? 0);
  await whileRunning(pipeline, `every ${phase} component filled`, () => (fillsSeen.get(phase) ?? 0) >= components);
  const drainedAfter = (performance.now() - started) / 1000 - feedSeconds;
  const l = latencies.get(phase)!;
  const line = (xs: number[]) => percentiles(xs, [50, 99, 99.9]).map(([p, v]) => `p${p} ${v.toFixed(0)} ms`).join(', ');
  report(`feed at ${fmt(rate)} portfolio orders/s`, `${fmt(count / feedSeconds)} orders/s = ${fmt(components / feedSeconds)} components/s`, `${fmt(count)} orders in ${feedSeconds.toFixed(1)} s`);
  report(`  order→fill latency, priority 1 (${fmt(l.p1.length)} fills)`, line(l.p1));
  cpuRow('while feeding', feedCpuUse, components);
  const h = hops.get(phase);
  if (h !== undefined) {
    const mid = (xs: number[]) => `${percentiles(xs, [50, 99]).map(([p, v]) => `p${p} ${v.toFixed(0)}`).join(' / ')} ms`;
    report(`    per hop: order → component (split)`, mid(h.split));
    report(`    per hop: component → execution (match)`, mid(h.match));
    report(`    per hop: execution → fill (fill-publisher)`, mid(h.fill));
    report(`    per hop: fill → seen by a reader`, mid(h.read), 'commit + read_committed fetch');
  }
  for (const [i, service] of snapshots.entries()) {
    const t = service.timings ?? {};
    const name = label(service.service, i % INSTANCES);
    const steps = ['txn.process', 'txn.send', 'txn.commit'].filter((k) => t[k] !== undefined);
    if (t['txn'] !== undefined) {
      const window = Math.min(t['txn'].count, TIMING_WINDOW);
      const earlier = Math.max(0, window - (t['txn'].count - (timedBefore[i] ?? 0)));
      report(
        `    ${name} transactions (last ${fmt(window)})`,
        `p50 ${t['txn'].p50Ms.toFixed(1)} / p99 ${t['txn'].p99Ms.toFixed(1)} ms`,
        steps.map((k) => `${k.slice(4)} ${t[k]!.p50Ms.toFixed(1)}/${t[k]!.p99Ms.toFixed(1)}`).join(', ') + (earlier > 0 ? `; ${fmt(earlier)} of them from before this feed` : ''),
      );
    }
    const delay = t['loop.delay'];
    if (delay !== undefined) {
      report(`    ${name} event loop delay`, ...loopDelay(delay));
    }
  }
  report(`  order→fill latency, priority 2 blocks (${fmt(l.p2.length)} fills)`, line(l.p2), 'includes the 1 s netting window');
  report(`  components not yet filled when the feed ended`, fmt(lagAtEnd), `matcher lag ${fmt(lagOf('order-matcher'))}, fill-publisher lag ${fmt(lagOf('fill-publisher'))}; all filled ${drainedAfter.toFixed(1)} s after the feed ended`);
  report(`  fills / components`, `${fmt(fillsSeen.get(phase) ?? 0)} / ${fmt(components)}`, (fillsSeen.get(phase) ?? 0) === components ? 'exactly once' : 'MISMATCH');
  const behindSeconds = lagAtEnd / (components / feedSeconds);
  const keptUp = behindSeconds < 1 && drainedAfter <= KEPT_UP_SECONDS;
  report(
    `  kept up`,
    keptUp ? 'yes' : 'no',
    `${behindSeconds.toFixed(1)} s of components unfilled when the feed ended (under 1 s, and all filled within ${KEPT_UP_SECONDS} s, is keeping up)`,
  );
  return { rate, componentsPerSecond: components / feedSeconds, keptUp, p1: line(l.p1) };
}

const results: PhaseResult[] = [];
for (const [i, rate] of RATES.entries()) results.push(await runPhase(rate, 200 + i));
if (RAMP > 0) {
  let rate = (RATES.at(-1) ?? 0) + RAMP;
  while (results.at(-1)?.keptUp !== false) {
    results.push(await runPhase(rate, 200 + results.length));
    rate += RAMP;
  }
}
const sustained = results.filter((r) => r.keptUp).sort((a, b) => b.rate - a.rate)[0];
if (results.length > 0) {
  report(
    'highest rate kept up',
    sustained === undefined ? 'none of the rates' : `${fmt(sustained.rate)} portfolio orders/s = ${fmt(sustained.componentsPerSecond)} components/s`,
    sustained === undefined ? '' : `priority 1 order→fill ${sustained.p1}${results.some((r) => r.rate > sustained.rate && !r.keptUp) ? '; a higher rate did not keep up' : ''}`,
  );
}

for (const [i, s] of matchers.entries()) report(`${label('order-matcher', i)} peak RSS`, ...(await peak(s)));
for (const [i, s] of fillPublishers.entries()) report(`${label('fill-publisher', i)} peak RSS`, ...(await peak(s)));
report('tick-deserializer peak RSS', ...(await peak(deserializer)));
ticks.kill('SIGTERM');
await stopReader();
await Promise.all([...pipeline.map((s) => s.stop()), deserializer.stop()]);

figures.print();
process.exit(0);
