import type { Execution } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { fillsOf } from './fills.ts';

const ID = '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11';
const NOW = 1_700_000_100;

describe('fillsOf', () => {
  it('fills a BUY at the execution price: +shares, −cash (shares × price to the micro-dollar)', () => {
    const execution: Execution = {
      taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, market_order_id: `mo:${ID}/IVE`, execution_id: `ex:${ID}/IVE`,
      order_type: 'BUY', symbol: 'IVE', requested_amount: 1000, requested_shares: 10.616753, requested_price: 94.190756, timestamp: NOW - 1,
      allocations: [{ taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, order_type: 'BUY', requested_amount: 1000, requested_shares: 10.616753, timestamp: NOW - 2 }],
    };
    expect(fillsOf(execution, NOW)).toEqual([
      {
        taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, market_order_id: `mo:${ID}/IVE`, execution_id: `ex:${ID}/IVE`,
        fill_id: `ex:${ID}/IVE/${ID}/IVE`, symbol: 'IVE', order_type: 'BUY',
        filled_amount: 999.999991, filled_shares: 10.616753, filled_price: 94.190756,
        delta_shares_position: 10.616753, delta_cash_position: -999.999991,
        timestamp: NOW, order_timestamp: NOW - 2,
      },
    ]);
  });

  it('fills every allocation of a block at the block price, with each allocation\'s own side', () => {
    const block: Execution = {
      taxpayer_id: 1, portfolio_order_id: ID, component_order_id: `${ID}/a`, market_order_id: `blk:${ID}/a`, execution_id: `blk:${ID}/a`,
      order_type: 'BUY', net_side: 'BUY', symbol: 'IVE', requested_amount: 600, requested_shares: 5.91133, requested_price: 101.5, timestamp: NOW,
      allocations: [
        { taxpayer_id: 1, portfolio_order_id: ID, component_order_id: `${ID}/a`, order_type: 'BUY', requested_amount: 1000, requested_shares: 9.852216, timestamp: NOW },
        { taxpayer_id: 2, portfolio_order_id: ID, component_order_id: `${ID}/b`, order_type: 'SELL', requested_amount: 400, requested_shares: 3.940886, timestamp: NOW },
      ],
    };
    expect(fillsOf(block, NOW).map((f) => [f.taxpayer_id, f.order_type, f.filled_price, f.filled_shares, f.filled_amount, f.delta_shares_position, f.delta_cash_position])).toEqual([
      [1, 'BUY', 101.5, 9.852216, 999.999924, 9.852216, -999.999924],
      [2, 'SELL', 101.5, 3.940886, 399.999929, -3.940886, 399.999929],
    ]);
  });

  it("treats the original's execution without allocations as one allocation of itself", () => {
    const original: Execution = {
      taxpayer_id: 9, portfolio_order_id: ID, component_order_id: 'c1', market_order_id: 'm1', order_type: 'SELL', symbol: 'VTI',
      requested_amount: 500, requested_shares: 5, requested_price: 99.999999, timestamp: NOW - 5,
    };
    expect(fillsOf(original, NOW)).toEqual([
      expect.objectContaining({
        taxpayer_id: 9, execution_id: 'ex:m1', fill_id: 'ex:m1/c1', order_type: 'SELL', filled_shares: 5, filled_amount: 499.999995,
        delta_shares_position: -5, delta_cash_position: 499.999995, order_timestamp: NOW - 5,
      }),
    ]);
  });
});
