import type { Fill, Position } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { comparePositions, describeDifference, InfluxComparison, readFill, Recomputation, type Recomputed } from './reconcile.ts';
import { mergeReadings, shareOut, type Reading } from './reconcile-read.ts';

const fill = (taxpayer: number, n: number, symbol: string, shares: number, cash: number): Fill => ({
  taxpayer_id: taxpayer,
  portfolio_order_id: '00000000-0000-4000-8000-000000000001',
  component_order_id: `c${n}`,
  market_order_id: `m${n}`,
  execution_id: `e${n}`,
  fill_id: `f${n}`,
  symbol,
  order_type: shares > 0 ? 'BUY' : 'SELL',
  filled_amount: Math.abs(cash),
  filled_shares: Math.abs(shares),
  filled_price: 10,
  delta_shares_position: shares,
  delta_cash_position: cash,
  timestamp: 1_700_000_000 + n,
});
const snapshot = (taxpayer: number, shares: Record<string, number>, cash: number, fills: number): Position => ({ taxpayer_id: taxpayer, shares, cash, fills, timestamp: 1 });

describe('reconciliation', () => {
  const fills = [fill(1, 1, 'IVE', 0.1, -1.000001), fill(1, 2, 'IVE', 0.2, -2.000002), fill(1, 3, 'VTI', -1, 10), fill(2, 4, 'IVE', 5, -50)];

  it('recomputes positions exactly: 0.1 + 0.2 shares is 0.3, to the micro-unit', () => {
    const r = new Recomputation();
    for (const f of fills) r.add(f);
    expect(r.fills).toBe(4);
    expect(r.accounts.get(1)).toEqual({ shares: new Map([['IVE', 300_000], ['VTI', -1_000_000]]), cash: 6_999_997, fills: 3 });
  });

  it('sums on exactly past 2^53 micro-units, as a bigint', () => {
    const r = new Recomputation();
    // 5 × 3 billion dollars: 1.5e16 micro-units, more than Number.MAX_SAFE_INTEGER (9.007e15).
    for (let i = 0; i < 5; i++) r.add(fill(9, 100 + i, 'IVE', 1, 3_000_000_000.000001));
    expect(r.accounts.get(9)!.cash).toBe(15_000_000_000_000_005n);
    expect(r.accounts.get(9)!.shares.get('IVE')).toBe(5_000_000);
  });

  it('reads the fields it needs from a fill, and says what is wrong with one it cannot', () => {
    expect(readFill(Buffer.from(JSON.stringify(fills[0])))).toEqual({ ok: true, value: fills[0] });
    expect(readFill(Buffer.from('{"taxpayer_id": 0}'))).toEqual({ ok: false, reason: 'taxpayer_id: must be a positive integer' });
    expect(readFill(Buffer.from(JSON.stringify({ ...fills[0], delta_cash_position: '1' })))).toEqual({ ok: false, reason: 'delta_cash_position: must be a number' });
    expect(readFill(Buffer.from('{"taxpayer'))).toMatchObject({ ok: false, reason: expect.stringMatching(/^not JSON/) });
  });

  it('finds no difference where the snapshots equal their fills', () => {
    const r = new Recomputation();
    for (const f of fills) r.add(f);
    const snapshots = new Map([[1, snapshot(1, { IVE: 0.3, VTI: -1 }, 6.999997, 3)], [2, snapshot(2, { IVE: 5 }, -50, 1)]]);
    expect(comparePositions(r.accounts, snapshots)).toEqual([]);
  });

  it('names the account and the amounts of every difference', () => {
    const r = new Recomputation();
    for (const f of fills) r.add(f);
    const snapshots = new Map([[1, snapshot(1, { IVE: 0.3, VTI: -1, NEW: 2 }, 7, 3)], [3, snapshot(3, {}, 0, 4)]]);
    const differences = comparePositions(r.accounts, snapshots);
    expect(differences).toEqual([
      { kind: 'position differs', taxpayer_id: 1, field: 'cash', from_fills: 6.999997, snapshot: 7 },
      { kind: 'position differs', taxpayer_id: 1, field: 'shares NEW', from_fills: 0, snapshot: 2 },
      { kind: 'no snapshot', taxpayer_id: 2, fills: 1 },
      { kind: 'snapshot without fills', taxpayer_id: 3, snapshot_fills: 4 },
    ]);
    expect(differences.map(describeDifference)).toEqual([
      'account 1: cash is 7 in its positions snapshot, 6.999997 from its fills',
      'account 1: shares NEW is 2 in its positions snapshot, 0 from its fills',
      'account 2: 1 fills but no positions snapshot',
      'account 3: a positions snapshot of 4 fills, but no fill',
    ]);
  });

  it("tells fills missing from InfluxDB from those it has that Kafka does not", () => {
    const influx = new InfluxComparison([
      { fill_id: 'f1', taxpayer_id: 1, amount: 1.000001 },
      { fill_id: 'f3', taxpayer_id: 1, amount: 10 },
      { fill_id: 'f9', taxpayer_id: 5, amount: 3 },
    ]);
    for (const f of fills) influx.check(f);
    expect(influx.differences()).toEqual([
      { kind: 'missing in InfluxDB', taxpayer_id: 1, fill_id: 'f2', amount: 2.000002 },
      { kind: 'missing in InfluxDB', taxpayer_id: 2, fill_id: 'f4', amount: 50 },
      { kind: 'only in InfluxDB', taxpayer_id: 5, fill_id: 'f9', amount: 3 },
    ]);
  });
});

describe('reading in shares', () => {
  const reading = (accounts: [number, Recomputed][], missing: string[], leftover: string[]): Reading => ({
    accounts: new Map(accounts),
    fills: accounts.reduce((n, [, a]) => n + a.fills, 0),
    read: accounts.reduce((n, [, a]) => n + a.fills, 0),
    unreadable: [],
    missing: missing.map((fill_id) => ({ kind: 'missing in InfluxDB', taxpayer_id: 1, fill_id, amount: 1 })),
    leftover: leftover.map((fill_id) => ({ fill_id, taxpayer_id: 1, amount: 1 })),
    firstRecordAt: undefined,
  });

  it('shares partitions out by their records, the largest first to the share with the fewest', () => {
    const r = (partition: number, records: number) => ({ partition, start: 10n, end: 10n + BigInt(records) });
    expect(shareOut([r(0, 5), r(1, 50), r(2, 30), r(3, 20), r(4, 1)], 2).map((share) => share.map((x) => x.partition))).toEqual([[1, 0], [2, 3, 4]]);
    expect(shareOut([r(0, 5)], 4)).toEqual([[r(0, 5)]]);
  });

  it('merges disjoint readings, adds the sums of an account found in two exactly, and matches a fill one share missed and another had left over', () => {
    const merged = mergeReadings([
      reading([[1, { shares: new Map([['IVE', 300_000]]), cash: Number.MAX_SAFE_INTEGER, fills: 2 }]], ['f1', 'f2'], ['f9']),
      reading([[1, { shares: new Map([['IVE', 1], ['VTI', 5]]), cash: 10, fills: 1 }], [2, { shares: new Map(), cash: -3, fills: 1 }]], ['f7'], ['f2']),
    ]);
    expect(merged.accounts.get(1)).toEqual({ shares: new Map([['IVE', 300_001], ['VTI', 5]]), cash: BigInt(Number.MAX_SAFE_INTEGER) + 10n, fills: 3 });
    expect(merged.accounts.get(2)).toEqual({ shares: new Map(), cash: -3, fills: 1 });
    expect(merged.fills).toBe(4);
    expect(merged.missing.map((d) => (d.kind === 'missing in InfluxDB' ? d.fill_id : d.kind))).toEqual(['f1', 'f7']);
    expect(merged.leftover.map((f) => f.fill_id)).toEqual(['f9']);
  });
});
