import type { PriceTick } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { valuePosition } from './valuation.ts';

const prices = new Map<string, PriceTick>([
  ['IVE', { symbol: 'IVE', exchange: 'NYSE', bid: 93.97388, ask: 94.190756, timestamp: 1_700_000_000.5 }],
  ['VTI', { symbol: 'VTI', exchange: 'NYSE', bid: 200.01, ask: 200.02, timestamp: 1_700_000_001 }],
]);

describe('valuePosition', () => {
  it('values each holding at the mid price, to the micro-dollar, and totals it with cash', () => {
    const valuation = valuePosition({ taxpayer_id: 42, shares: { VTI: 2.5, IVE: 10.123456 }, cash: -1_456.789012, fills: 3, timestamp: 1_700_000_002 }, (s) => prices.get(s));
    // IVE mid = (93.97388 + 94.190756) / 2 = 94.082318; 10.123456 × 94.082318 = 952.438206651 → 952.438207
    // VTI mid = 200.015; 2.5 × 200.015 = 500.0375
    expect(valuation).toEqual({
      taxpayer_id: 42,
      cash: -1456.789012,
      holdings: [
        { symbol: 'IVE', shares: 10.123456, price: 94.082318, price_time: 1_700_000_000.5, value: 952.438207 },
        { symbol: 'VTI', shares: 2.5, price: 200.015, price_time: 1_700_000_001, value: 500.0375 },
      ],
      holdings_value: 1452.475707,
      total: -4.313305,
      unpriced: [],
      fills: 3,
      last_fill_time: 1_700_000_002,
    });
  });

  it('rounds a half micro-dollar of a half-micro mid away from zero, once', () => {
    const odd = new Map<string, PriceTick>([['X', { symbol: 'X', exchange: 'NYSE', bid: 1.000001, ask: 1.000002, timestamp: 1 }]]);
    // mid 1.0000015; 1 share → 1.0000015 → 1.000002; -1 share → -1.000002
    expect(valuePosition({ taxpayer_id: 1, shares: { X: 1 }, cash: 0, fills: 1, timestamp: 1 }, (s) => odd.get(s)).holdings[0]!.value).toBe(1.000002);
    expect(valuePosition({ taxpayer_id: 1, shares: { X: -1 }, cash: 0, fills: 1, timestamp: 1 }, (s) => odd.get(s)).total).toBe(-1.000002);
  });

  it('leaves zero holdings out and names the holdings without a price, outside the total', () => {
    const valuation = valuePosition({ taxpayer_id: 7, shares: { VTI: 0, NEW: 3 }, cash: 100, fills: 2, timestamp: 5 }, (s) => prices.get(s));
    expect(valuation.holdings).toEqual([{ symbol: 'NEW', shares: 3, price: null, price_time: null, value: null }]);
    expect(valuation.unpriced).toEqual(['NEW']);
    expect(valuation.total).toBe(100);
  });

  it('sums 10,000 holdings exactly (no floating-point drift)', () => {
    const many = new Map<string, PriceTick>();
    const shares: Record<string, number> = {};
    let expected = 0n;
    for (let i = 0; i < 10_000; i++) {
      const symbol = `S${i}`;
      many.set(symbol, { symbol, exchange: 'NYSE', bid: 0.1, ask: 0.3, timestamp: 1 });
      shares[symbol] = 0.000003;
      expected += 1n; // 3 micro-shares × 0.2 = 0.6 micro-dollar → 1
    }
    expect(valuePosition({ taxpayer_id: 1, shares, cash: 0.1, fills: 1, timestamp: 1 }, (s) => many.get(s)).total).toBe(Number(expected + 100_000n) / 1e6);
  });
});
