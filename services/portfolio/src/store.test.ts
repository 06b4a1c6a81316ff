import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Fill, Position } from '@tradeflow/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { PortfolioStore, type Received } from './store.ts';

const dirs: string[] = [];
const freshPath = () => {
  const dir = mkdtempSync(join(tmpdir(), 'portfolio-store-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const position = (taxpayer: number, fills: number, cash: number): Position => ({ taxpayer_id: taxpayer, shares: { IVE: fills }, cash, fills, timestamp: 1_700_000_000 + fills });
/** A value as the view hands it to the store: decoded, and the bytes its record carried. */
const received = <T>(value: T): Received<T> => ({ value, bytes: Buffer.from(JSON.stringify(value)) });
const fill = (taxpayer: number, n: number): Fill => ({
  taxpayer_id: taxpayer,
  portfolio_order_id: '00000000-0000-4000-8000-000000000001',
  component_order_id: `c${n}`,
  market_order_id: `m${n}`,
  execution_id: `e${n}`,
  fill_id: `f${taxpayer}-${n}`,
  symbol: 'IVE',
  order_type: 'BUY',
  filled_amount: 94,
  filled_shares: 1,
  filled_price: 94,
  delta_shares_position: 1,
  delta_cash_position: -94,
  timestamp: 1_700_000_000 + n,
});

describe('PortfolioStore', () => {
  it('keeps the latest snapshot of each account, its newest fills up to its limit, and the newest price', async () => {
    const store = PortfolioStore.open({ path: freshPath(), recentFills: 3 });
    await store.apply({
      positions: [received(position(1, 1, -94)), received(position(2, 1, -94)), received(position(1, 2, -188))],
      fills: [received(fill(1, 1)), received(fill(2, 1)), received(fill(1, 2))],
      prices: [{ symbol: 'IVE', exchange: 'NYSE', bid: 94, ask: 94.5, timestamp: 10 }, { symbol: 'IVE', exchange: 'NYSE', bid: 93, ask: 93.5, timestamp: 9 }],
      offsets: [{ topic: 'positions', partition: 0, next: 3n }],
    });
    // An older snapshot (a partition read again from its beginning) changes nothing.
    await store.apply({ positions: [received(position(1, 1, -94))], fills: [received(fill(1, 3)), received(fill(1, 4))], offsets: [{ topic: 'fills', partition: 0, next: 5n }] });
    expect(store.position(1)).toEqual(position(1, 2, -188));
    expect(store.recent(1, 10).map((f) => f.fill_id)).toEqual(['f1-4', 'f1-3', 'f1-2']);
    expect(store.recent(1, 1).map((f) => f.fill_id)).toEqual(['f1-4']);
    expect(store.price('IVE')?.bid).toBe(94);
    expect(store.position(3)).toBeUndefined();
    expect(store.accounts()).toBe(2);
    await store.close();
  });

  it("keeps each symbol's latest tick of a batch (of one time, the later one), never an older one", async () => {
    const store = PortfolioStore.open({ path: freshPath(), recentFills: 3 });
    const tick = (symbol: string, bid: number, timestamp: number) => ({ symbol, exchange: 'NYSE', bid, ask: bid + 0.5, timestamp });
    await store.apply({ prices: [tick('IVE', 1, 5), tick('SPY', 2, 5), tick('IVE', 3, 7), tick('IVE', 4, 7), tick('IVE', 5, 6)], offsets: [{ topic: 'prices', partition: 0, next: 5n }] });
    expect(store.price('IVE')?.bid).toBe(4);
    expect(store.price('SPY')?.bid).toBe(2);
    await store.apply({ prices: [tick('IVE', 6, 6), tick('SPY', 7, 8)], offsets: [{ topic: 'prices', partition: 1, next: 2n }] });
    expect(store.price('IVE')?.bid).toBe(4);
    expect(store.price('SPY')?.bid).toBe(7);
    expect(store.offset('prices', 0)).toBe(5n);
    expect(store.offset('prices', 1)).toBe(2n);
    await store.close();
  });

  it('after a restart answers as before and says where to go on reading (the checkpoint)', async () => {
    const path = freshPath();
    const store = PortfolioStore.open({ path, recentFills: 5 });
    await store.apply({ positions: [received(position(7, 4, 12.5))], fills: [received(fill(7, 4))], offsets: [{ topic: 'positions', partition: 3, next: 41n }, { topic: 'fills', partition: 3, next: 17n }] });
    await store.close();

    const reopened = PortfolioStore.open({ path, recentFills: 5 });
    expect(reopened.position(7)).toEqual(position(7, 4, 12.5));
    expect(reopened.recent(7, 5)).toEqual([fill(7, 4)]);
    expect(reopened.offset('positions', 3)).toBe(41n);
    expect(reopened.offset('fills', 3)).toBe(17n);
    expect(reopened.offset('positions', 2)).toBeUndefined();
    await reopened.close();
  });
});

describe('PortfolioStore of one Kafka cluster', () => {
  it('keeps the cluster it is of; kept for another, it is cleared whole and serves nothing of the old one', async () => {
    const path = freshPath();
    const store = PortfolioStore.open({ path, recentFills: 3 });
    expect(store.cluster()).toBeUndefined();
    await store.keepFor('cluster-a', false);
    await store.apply({ positions: [received(position(7, 50, 100))], fills: [received(fill(7, 1))], prices: [{ symbol: 'IVE', exchange: 'NYSE', bid: 94, ask: 95, timestamp: 1_700_000_000 }], offsets: [{ topic: 'positions', partition: 2, next: 41n }, { topic: 'fills', partition: 2, next: 9n }] });
    expect(store.allOffsets().sort()).toEqual([['fills', 2, 9n], ['positions', 2, 41n]]);
    await store.close();

    const again = PortfolioStore.open({ path, recentFills: 3 });
    expect(again.cluster()).toBe('cluster-a');
    await again.keepFor('cluster-b', true);
    expect(again.cluster()).toBe('cluster-b');
    expect(again.position(7)).toBeUndefined();
    expect(again.recent(7, 10)).toEqual([]);
    expect(again.price('IVE')).toBeUndefined();
    expect(again.allOffsets()).toEqual([]);
    // A snapshot of the new cluster with fewer fills than the old one had is kept (not shadowed).
    await again.apply({ positions: [received(position(7, 2, 5))], offsets: [{ topic: 'positions', partition: 2, next: 1n }] });
    expect(again.position(7)?.fills).toBe(2);
    await again.close();
  });
});

describe('PortfolioStore formats', () => {
  it('keeps values as the bytes their records carried, and tells a store of the earlier format (msgpack values) from its own', async () => {
    const path = freshPath();
    const fresh = PortfolioStore.open({ path, recentFills: 3 });
    expect(fresh.isCurrentFormat()).toBe(true);
    await fresh.keepFor('cluster-a', false);
    const bytes = Buffer.from('{"taxpayer_id":7,"shares":{"IVE":1.5},"cash":-141,"fills":1,"timestamp":1700000001,"extra":"kept as it came"}');
    const value: Position = { taxpayer_id: 7, shares: { IVE: 1.5 }, cash: -141, fills: 1, timestamp: 1_700_000_001 };
    await fresh.apply({ positions: [{ value, bytes }], offsets: [] });
    expect(fresh.position(7)).toEqual({ taxpayer_id: 7, shares: { IVE: 1.5 }, cash: -141, fills: 1, timestamp: 1_700_000_001 });
    expect(fresh.isCurrentFormat()).toBe(true);
    await fresh.close();

    // What the earlier code left: msgpack values, offsets, and no format recorded.
    const { open } = await import('lmdb');
    const earlier = freshPath();
    const root = open({ path: earlier, maxDbs: 8, compression: false, noSync: true });
    await root.openDB({ name: 'positions' }).put(7, position(7, 1, -94));
    await root.openDB({ name: 'offsets' }).put('positions:0', '1');
    await root.openDB({ name: 'meta' }).put('cluster', 'cluster-a');
    await root.close();
    const old = PortfolioStore.open({ path: earlier, recentFills: 3 });
    expect(old.isCurrentFormat()).toBe(false);
    await old.keepFor('cluster-a', true);
    expect(old.isCurrentFormat()).toBe(true);
    expect(old.position(7)).toBeUndefined();
    await old.close();
  });

  it('tells a store of format 2 (fill counts among the fills) from its own, and counts afresh once it is cleared', async () => {
    const { open } = await import('lmdb');
    const path = freshPath();
    const root = open({ path, maxDbs: 8, compression: false, noSync: true });
    const count = Buffer.alloc(8);
    count.writeDoubleBE(2, 0);
    await root.openDB({ name: 'recent-fills', encoding: 'binary' }).put([7, -1], count);
    await root.openDB({ name: 'recent-fills', encoding: 'binary' }).put([7, 0], received(fill(7, 1)).bytes);
    await root.openDB({ name: 'offsets' }).put('fills:0', '2');
    await root.openDB({ name: 'meta' }).put('format', '2');
    await root.close();
    const store = PortfolioStore.open({ path, recentFills: 3 });
    expect(store.isCurrentFormat()).toBe(false);
    await store.keepFor('cluster-a', true);
    expect(store.isCurrentFormat()).toBe(true);
    expect(store.recent(7, 10)).toEqual([]);
    await store.apply({ fills: [received(fill(7, 5))], offsets: [{ topic: 'fills', partition: 0, next: 1n }] });
    expect(store.recent(7, 10).map((f) => f.fill_id)).toEqual(['f7-5']);
    await store.close();
  });
});
