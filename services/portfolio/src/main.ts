/**
 * portfolio: each account's holdings at a glance, live.
 *   positions + fills (co-partitioned by taxpayer_id, shared out by the group) ──▶ LMDB store
 *   prices (every partition, in every instance) ──▶ LMDB store
 *   HTTP: /accounts/{id}, /accounts/{id}/fills, /accounts/{id}/events (SSE), / (the page);
 *   an account another instance holds is answered by forwarding to it.
 * The store checkpoints the offsets it applied, so a restart reads on from there.
 */
import { rmSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import {
  claimDirectory,
  clusterState,
  connectService,
  decodeMessage,
  envInt,
  Fill,
  kafkaEnv,
  listen,
  parseEnv,
  Position,
  PriceTick,
  runBroadcast,
  runService,
  runView,
  serviceEnv,
  storeMismatch,
  TOPICS,
  untilSuccess,
  type RunningView,
  type ViewBatch,
} from '@tradeflow/shared';
import { z } from 'zod';
import { AccountEvents, answerFor, createPortfolioServer, type Ownership } from './http.ts';
import { newestPerKey } from './newest.ts';
import { fillAsStored, positionAsStored } from './records.ts';
import { PortfolioStore, type Received } from './store.ts';

const SERVICE_NAME = 'portfolio';

/** An address other instances can reach this one at: the first non-loopback IPv4, else loopback. */
function defaultAddress(host: string): string {
  if (host !== '0.0.0.0' && host !== '::') return host;
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

runService(SERVICE_NAME, async (logger) => {
  const env = parseEnv({
    ...kafkaEnv,
    ...serviceEnv,
    GROUP_ID: z.string().min(1).default(SERVICE_NAME),
    PORTFOLIO_PORT: envInt(1, 65_535).default(8090),
    PORTFOLIO_HOST: z.string().default('127.0.0.1'),
    /** How other instances reach this one (announced to the group); default: http://<address>:<port>. */
    PORTFOLIO_ADVERTISED_URL: z.url({ error: 'must be a URL such as http://10.0.0.5:8090' }).optional(),
    /** The store lives in a directory of its own under this one (per group and host, and instance on the host). */
    PORTFOLIO_STORE_DIR: z.string().min(1).default(join(process.cwd(), '.local', 'portfolio')),
    PORTFOLIO_RECENT_FILLS: envInt(1, 1_000).default(50),
    /** Without a checkpoint: how many of the last fills of a partition to read for recent fills. */
    PORTFOLIO_FILLS_RESTORE: envInt(0, 100_000_000).default(100_000),
    /** Without a checkpoint: how many of the last prices of a partition to read for the latest ones. */
    PORTFOLIO_PRICES_RESTORE: envInt(0, 100_000_000).default(20_000),
  });
  const self = env.PORTFOLIO_ADVERTISED_URL?.replace(/\/$/, '') ?? `http://${defaultAddress(env.PORTFOLIO_HOST)}:${env.PORTFOLIO_PORT}`;
  // `<group>-<host>`, or `-2`, `-3`… while another live instance on this host holds it: the same
  // directory at every restart, whichever port it serves on.
  const claim = claimDirectory(env.PORTFOLIO_STORE_DIR, `${env.GROUP_ID}-${hostname()}`);
  const storeDir = join(claim.path, 'lmdb');
  let store: PortfolioStore;
  try {
    store = PortfolioStore.open({ path: storeDir, recentFills: env.PORTFOLIO_RECENT_FILLS });
  } catch (error) {
    // A store the OS lost part of (it is not flushed commit by commit): rebuilt from the topics.
    logger.error({ err: error, storeDir }, 'the store cannot be opened; removing it, it is rebuilt from the topics');
    rmSync(storeDir, { recursive: true, force: true });
    store = PortfolioStore.open({ path: storeDir, recentFills: env.PORTFOLIO_RECENT_FILLS });
  }
  logger.info({ storeDir, accounts: store.accounts() }, 'store opened');

  const { kafka, metrics, runnerSettings, close } = await connectService(SERVICE_NAME, env, logger);
  // A store of other topics (the broker's data was removed, or a topic created again) would serve
  // accounts Kafka no longer has, and keep them over newer snapshots with fewer fills: it is cleared.
  const cluster = await untilSuccess('reading the Kafka cluster id and end offsets', logger, () => clusterState(kafka, [TOPICS.positions, TOPICS.fills, TOPICS.prices]), runnerSettings.retryMaxMs);
  const mismatch = storeMismatch({ clusterId: store.cluster(), offsets: store.allOffsets() }, cluster);
  if (mismatch !== undefined) logger.warn({ storeDir, reason: mismatch, accounts: store.accounts() }, `the store is not of these topics (${mismatch}); clearing it: it is rebuilt from the topics`);
  const earlierFormat = mismatch === undefined && !store.isCurrentFormat();
  if (earlierFormat) logger.warn({ storeDir, accounts: store.accounts() }, 'the store holds values in the format of an earlier version; clearing it: it is rebuilt from the topics');
  await store.keepFor(cluster.clusterId, mismatch !== undefined || earlierFormat);
  const events = new AccountEvents();
  const held = new Set<number>();

  /** The batch's readable records decoded, added to `out` (a new array when not given). */
  const decoded = <T>(batch: ViewBatch, decode: (bytes: Buffer | null) => { ok: true; value: T } | { ok: false; reason: string }, out: Received<T>[] = []): Received<T>[] => {
    for (const record of batch.records) {
      if (record.value === null) continue;
      const result = decode(record.value);
      if (result.ok) out.push({ value: result.value, bytes: record.value });
      else logger.warn({ ...batch.source, offset: record.offset, reason: result.reason }, 'skipped an unreadable record');
    }
    return out;
  };
  const startAt = (topic: string, partition: number, otherwise: 'beginning' | { last: number }) => store.offset(topic, partition) ?? otherwise;
  /**
   * Of each account's snapshots in the batch, the newest that reads (newestPerKey), added to `out` in
   * the partition's order; unreadable ones are logged and skipped, as by `decoded`.
   */
  const newestPositions = (batch: ViewBatch, out: Received<Pick<Position, 'taxpayer_id' | 'fills'>>[]): void => {
    const taken: Received<Pick<Position, 'taxpayer_id' | 'fills'>>[] = [];
    newestPerKey(batch.records, (record) => {
      if (record.value === null) return false;
      const result = positionAsStored(record.value);
      if (result.ok) taken.push({ value: result.value, bytes: record.value });
      else logger.warn({ ...batch.source, offset: record.offset, reason: result.reason }, 'skipped an unreadable record');
      return result.ok;
    });
    for (let i = taken.length - 1; i >= 0; i--) out.push(taken[i]!);
  };

  const applyPrices = async (batches: readonly ViewBatch[]): Promise<void> => {
    const ticks: PriceTick[] = [];
    for (const batch of batches) for (const tick of decoded(batch, (b) => decodeMessage(PriceTick, b))) ticks.push(tick.value);
    await store.apply({ prices: ticks, offsets: batches.map((batch) => ({ ...batch.source, next: batch.next })) });
    metrics.written += ticks.length;
  };
  const prices = await runBroadcast({
    kafka,
    logger: logger.child({ view: 'prices' }),
    metrics,
    name: `${env.GROUP_ID}-prices`,
    topics: [TOPICS.prices],
    retryMaxMs: runnerSettings.retryMaxMs,
    startAt: ({ topic, partition }) => startAt(topic, partition, { last: env.PORTFOLIO_PRICES_RESTORE }),
    apply: (batch) => applyPrices([batch]),
    // One store transaction per fetch of every partition's ticks (the store writes each symbol's latest once).
    applyFetch: applyPrices,
  });

  let view: RunningView | undefined;
  const ownership: Ownership = {
    self,
    partitions: env.TOPIC_PARTITIONS,
    holds: (partition) => held.has(partition),
    ownerOf: (partition) => view?.owners().get(partition),
    refresh: async () => view?.refreshOwners(),
    lag: (partition) => ({
      positions: Number(view?.lag(TOPICS.positions, partition) ?? 0n),
      fills: Number(view?.lag(TOPICS.fills, partition) ?? 0n),
    }),
  };
  /** Batches of positions and fills (of one fetch, or one partition's) into the store, then one event per changed account watched. */
  const applyBatches = async (batches: readonly ViewBatch[]): Promise<void> => {
    const started = performance.now();
    const positions: Received<Pick<Position, 'taxpayer_id' | 'fills'>>[] = [];
    const fills: Received<Pick<Fill, 'taxpayer_id' | 'fill_id'>>[] = [];
    for (const batch of batches) {
      if (batch.source.topic === TOPICS.positions) newestPositions(batch, positions);
      else decoded(batch, fillAsStored, fills);
    }
    await store.apply({ positions, fills, offsets: batches.map((batch) => ({ ...batch.source, next: batch.next })) });
    metrics.written += positions.length + fills.length;
    // One event per changed account watched, with the fills that changed it (when fills did).
    const changed = new Map<number, string[]>();
    for (const { value: p } of positions) if (!changed.has(p.taxpayer_id)) changed.set(p.taxpayer_id, []);
    for (const { value: f } of fills) {
      const ids = changed.get(f.taxpayer_id);
      if (ids === undefined) changed.set(f.taxpayer_id, [f.fill_id]);
      else ids.push(f.fill_id);
    }
    for (const [taxpayerId, newFills] of changed) {
      if (!events.watched(taxpayerId)) continue;
      const answer = answerFor(store, ownership, taxpayerId);
      if (answer !== undefined) events.send(taxpayerId, 'account', { ...answer, new_fills: newFills });
    }
    // From a fetch handed over to its events written: the part of a fill's way to the API spent here.
    metrics.time('apply', performance.now() - started);
  };
  view = await runView({
    kafka,
    logger: logger.child({ view: 'accounts' }),
    metrics,
    groupId: env.GROUP_ID,
    topics: [TOPICS.positions, TOPICS.fills],
    partitions: env.TOPIC_PARTITIONS,
    endpoint: self,
    retryMaxMs: runnerSettings.retryMaxMs,
    // positions is compacted: without a checkpoint it is read whole (the accounts rebuilt).
    startAt: ({ topic, partition }) => startAt(topic, partition, topic === TOPICS.positions ? 'beginning' : { last: env.PORTFOLIO_FILLS_RESTORE }),
    onAssignment: (partitions) => {
      held.clear();
      for (const p of partitions) held.add(p);
      metrics.extra['partitions'] = held.size;
    },
    apply: (batch) => applyBatches([batch]),
    // One store transaction for a fetch, not one per partition: the commits were a sixth of the
    // service's busy time under the order flow (CPU profile).
    applyFetch: applyBatches,
  });

  const server = createPortfolioServer({ store, ownership, events, metrics, logger });
  const gauges = setInterval(() => {
    metrics.extra['accounts'] = store.accounts();
    metrics.extra['subscribers'] = events.size;
  }, 1_000);
  gauges.unref();
  await listen(server, env.PORTFOLIO_HOST, env.PORTFOLIO_PORT, 'PORTFOLIO_PORT');
  logger.info({ url: `http://${env.PORTFOLIO_HOST}:${env.PORTFOLIO_PORT}`, advertised: self }, 'serving');

  return {
    stop: async () => {
      clearInterval(gauges);
      server.closeAllConnections();
      server.close();
      await Promise.all([view?.stop(), prices.stop()]);
      await store.close();
      claim.release();
      close();
    },
  };
});
