import { DLQ_HEADERS, TOPICS, type ConsumedRecord } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { splitOrders, splitPortfolioOrder } from './split.ts';

const ID = '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11';
const order = {
  taxpayer_id: 7,
  portfolio_order_id: ID,
  order_type: 'BUY' as const,
  amount: 1000,
  portfolio: [
    { symbol: 'VTI', weight: 0.3333333333 },
    { symbol: 'IVE', weight: 0.3333333333 },
    { symbol: 'IWS', weight: 0.3333333334 },
  ],
  priority: 1 as const,
  timestamp: 1438539936.5,
};

describe('splitPortfolioOrder', () => {
  it('makes one component per symbol, amount × weight, the parts summing exactly to the amount (left-over micro-dollars to the largest remainders, ties to the first)', () => {
    expect(splitPortfolioOrder(order)).toEqual([
      { taxpayer_id: 7, portfolio_order_id: ID, component_order_id: `${ID}/VTI`, order_type: 'BUY', symbol: 'VTI', amount: 333.333334, priority: 1, timestamp: 1438539936.5 },
      { taxpayer_id: 7, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, order_type: 'BUY', symbol: 'IVE', amount: 333.333333, priority: 1, timestamp: 1438539936.5 },
      { taxpayer_id: 7, portfolio_order_id: ID, component_order_id: `${ID}/IWS`, order_type: 'BUY', symbol: 'IWS', amount: 333.333333, priority: 1, timestamp: 1438539936.5 },
    ]);
  });

  it('splits 60/40 exactly', () => {
    const parts = splitPortfolioOrder({ ...order, amount: 1234.56, portfolio: [{ symbol: 'VTI', weight: 0.6 }, { symbol: 'IVE', weight: 0.4 }] });
    expect(parts.map((p) => p.amount)).toEqual([740.736, 493.824]);
  });
});

describe('splitOrders', () => {
  const record = (value: string): ConsumedRecord => ({ topic: TOPICS.orders, partition: 0, offset: '5', key: Buffer.from(ID), value: Buffer.from(value), headers: {}, timestamp: '0' });

  it("accepts the original's [symbol, weight] pairs and keys components by symbol", () => {
    const original = JSON.stringify({ ...order, portfolio: [['VTI', 0.5], ['IVE', 0.5]] });
    expect(splitOrders([record(original)]).map((r) => [r.topic, r.key, JSON.parse(String(r.value)).amount])).toEqual([
      [TOPICS.orderComponents, 'VTI', 500],
      [TOPICS.orderComponents, 'IVE', 500],
    ]);
  });

  it('dead-letters an order whose weights do not sum to 1, with the reason', () => {
    const bad = JSON.stringify({ ...order, portfolio: [['VTI', 0.5], ['IVE', 0.4]] });
    const [out] = splitOrders([record(bad)]);
    expect(out!.topic).toBe(TOPICS.ordersDlq);
    expect(out!.headers![DLQ_HEADERS.error]).toBe('portfolio: weights must sum to 1 (±1e-6), they sum to 0.9');
    expect(out!.value).toEqual(Buffer.from(bad));
  });
});
