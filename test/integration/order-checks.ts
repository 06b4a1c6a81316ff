/** What every order-flow test checks at the end: each component filled once, positions equal to their fills. */
import { decodeMessage, Fill, readPartitionsToEnd, TOPICS, type Kafka, type Position, type Producer } from '@tradeflow/shared';
import { expect } from 'vitest';
import { startService, uniqueName, waitFor } from './helpers.ts';

/** Every committed record of a topic, as it is now, oldest first per partition. */
export async function readAll(kafka: Kafka, topic: string): Promise<{ key: string; value: Buffer | null }[]> {
  const admin = kafka.admin();
  await admin.connect();
  const partitions = (await admin.fetchTopicOffsets(topic)).map((p) => p.partition);
  await admin.disconnect();
  const entries = await readPartitionsToEnd(kafka, topic, partitions, uniqueName('reader'));
  return [...entries.values()].flat();
}

/** Every committed fill, per partition in offset order. */
export async function readFills(kafka: Kafka): Promise<Fill[]> {
  return (await readAll(kafka, TOPICS.fills)).flatMap((r) => {
    const fill = decodeMessage(Fill, r.value);
    return fill.ok ? [fill.value] : [];
  });
}

/** The latest snapshot of each account in the compacted positions topic. */
export async function latestPositionsOfAll(kafka: Kafka): Promise<Map<number, Position>> {
  const latest = new Map<number, Position>();
  for (const entry of await readAll(kafka, TOPICS.positions)) if (entry.value !== null) latest.set(Number(entry.key), JSON.parse(entry.value.toString()) as Position);
  return latest;
}

/** The latest positions, once their fill counts add up to `fills` (waiting up to timeoutMs). */
export function positionsAccountingFor(kafka: Kafka, fills: number, timeoutMs: number): Promise<Map<number, Position>> {
  return waitFor(
    'positions to account for every fill',
    async () => {
      const latest = await latestPositionsOfAll(kafka);
      return [...latest.values()].reduce((sum, p) => sum + p.fills, 0) >= fills ? latest : undefined;
    },
    timeoutMs,
    2_000,
  );
}

const micros = (x: number) => BigInt(Math.round(x * 1e6));

/** Positions computed from fills with exact micro-unit sums. */
export function sumFills(fills: readonly Fill[]): Map<number, { shares: Map<string, bigint>; cash: bigint; fills: number }> {
  const sums = new Map<number, { shares: Map<string, bigint>; cash: bigint; fills: number }>();
  for (const f of fills) {
    const account = sums.get(f.taxpayer_id) ?? { shares: new Map<string, bigint>(), cash: 0n, fills: 0 };
    account.shares.set(f.symbol, (account.shares.get(f.symbol) ?? 0n) + micros(f.delta_shares_position));
    account.cash += micros(f.delta_cash_position);
    account.fills++;
    sums.set(f.taxpayer_id, account);
  }
  return sums;
}

export function expectPositionsEqualFills(positions: Map<number, Position>, fills: readonly Fill[]): void {
  const sums = sumFills(fills);
  expect(positions.size).toBe(sums.size);
  for (const [taxpayer, sum] of sums) {
    const position = positions.get(taxpayer)!;
    expect(position.fills, `fills of ${taxpayer}`).toBe(sum.fills);
    expect(micros(position.cash), `cash of ${taxpayer}`).toBe(sum.cash);
    for (const [symbol, shares] of sum.shares) expect(micros(position.shares[symbol] ?? 0), `${symbol} of ${taxpayer}`).toBe(shares);
  }
}

export function expectExactlyOnce(fills: readonly Fill[], expected: ReadonlySet<string>): void {
  const seen = new Map<string, Fill[]>();
  for (const f of fills) seen.set(f.component_order_id, [...(seen.get(f.component_order_id) ?? []), f]);
  const twice = [...seen.values()].filter((list) => list.length > 1);
  const missing = [...expected].filter((id) => !seen.has(id));
  expect({ duplicated: twice.length, missing: missing.length, sample: twice.slice(0, 2), missingSample: missing.slice(0, 5) }).toEqual({ duplicated: 0, missing: 0, sample: [], missingSample: [] });
  expect(fills.length).toBe(expected.size);
  expect(new Set(fills.map((f) => f.fill_id)).size).toBe(expected.size);
  const components = new Set(fills.map((f) => f.component_order_id));
  expect(components.size).toBe(expected.size);
  for (const id of expected) expect(components.has(id), id).toBe(true);
}

/** order-matcher and fill-publisher started with `env`, in the groups `<group>-matcher` and `<group>-fills`. */
export async function startOrderFlow(env: Record<string, string>, group: string): Promise<void> {
  await startService('order-matcher', { ...env, GROUP_ID: `${group}-matcher` });
  await startService('fill-publisher', { ...env, GROUP_ID: `${group}-fills` });
}

/** An idempotent producer, connected, that has sent one price per symbol at `at` (epoch seconds): the i-th bid 50 + i, ask 50.05 + i. */
export async function producerWithOpeningPrices(kafka: Kafka, symbols: readonly string[], at: number): Promise<Producer> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({
    topic: TOPICS.prices,
    acks: -1,
    messages: symbols.map((symbol, i) => ({ key: symbol, value: JSON.stringify({ symbol, exchange: 'NYSE', bid: 50 + i, ask: 50.05 + i, timestamp: at }) })),
  });
  return producer;
}
