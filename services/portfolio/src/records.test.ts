import { describe, expect, it } from 'vitest';
import { fillAsStored, positionAsStored } from './records.ts';

const fill = {
  taxpayer_id: 42,
  portfolio_order_id: '0b0e4c4e-1f2a-4c55-9a3e-0d6a1c2b3e4f',
  component_order_id: '0b0e4c4e-1f2a-4c55-9a3e-0d6a1c2b3e4f/VTI',
  market_order_id: 'm-1',
  execution_id: 'e-1',
  fill_id: 'f-1',
  symbol: 'VTI',
  order_type: 'BUY',
  filled_amount: 1000,
  filled_shares: 4.12,
  filled_price: 242.7,
  delta_shares_position: 4.12,
  delta_cash_position: -1000,
  timestamp: 1_796_000_000,
};
const bytes = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('records as the store keeps them', () => {
  it('a fill: its account and id, checked in place, extra fields and all', () => {
    expect(fillAsStored(bytes({ ...fill, venue: 'kept in the bytes' }))).toEqual({ ok: true, value: { taxpayer_id: 42, fill_id: 'f-1' } });
  });

  it('a fill the fast path leaves to the schema (a symbol to normalize) still reads', () => {
    expect(fillAsStored(bytes({ ...fill, symbol: ' vti ' }))).toEqual({ ok: true, value: { taxpayer_id: 42, fill_id: 'f-1' } });
  });

  it('an unreadable fill: the schema says why', () => {
    const notJson = fillAsStored(Buffer.from('{"taxpayer_id":'));
    expect(notJson.ok).toBe(false);
    expect(!notJson.ok && notJson.reason).toMatch(/^not JSON/);
    const noAccount = fillAsStored(bytes({ ...fill, taxpayer_id: -1 }));
    expect(noAccount.ok).toBe(false);
    expect(!noAccount.ok && noAccount.reason).toMatch(/taxpayer_id/);
    expect(fillAsStored(null)).toEqual({ ok: false, reason: 'empty message' });
  });

  it('a position: its account and fill count; an unreadable one with the reason', () => {
    expect(positionAsStored(bytes({ taxpayer_id: 7, shares: { VTI: 1.5 }, cash: -10, fills: 3, timestamp: 1_796_000_000 }))).toEqual({ ok: true, value: { taxpayer_id: 7, fills: 3 } });
    const bad = positionAsStored(bytes({ taxpayer_id: 7, shares: { VTI: 'x' }, cash: -10, fills: 3, timestamp: 1_796_000_000 }));
    expect(bad.ok).toBe(false);
  });
});
