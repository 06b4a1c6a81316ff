import { describe, expect, it } from 'vitest';
import { describeIssues, PortfolioOrder, RawTick } from './schemas.ts';

const originalTick = { ask: 94.190756, timestamp: 1438539936.355217, symbol: 'IVE', bid: 93.97388, exchange: 'NASDAQ' };

describe('RawTick', () => {
  it("accepts the original feed's exact JSON", () => {
    expect(RawTick.parse(JSON.parse(JSON.stringify(originalTick)))).toEqual(originalTick);
  });

  it('accepts bid equal to ask', () => {
    expect(RawTick.safeParse({ ...originalTick, bid: 94.190756 }).success).toBe(true);
  });

  it.each([
    ['crossed quote', { ...originalTick, bid: 95 }, 'bid: bid must not exceed ask (crossed quote)'],
    ['negative bid', { ...originalTick, bid: -1 }, 'bid: must be a positive price'],
    ['zero bid', { ...originalTick, bid: 0 }, 'bid: must be a positive price'],
    ['timestamp in milliseconds', { ...originalTick, timestamp: 1438539936355 }, 'timestamp: must be epoch seconds before 2100-01-01 (milliseconds instead of seconds?)'],
    ['timestamp before 2000', { ...originalTick, timestamp: 12 }, 'timestamp: must be epoch seconds on or after 2000-01-01 (milliseconds or a wrong clock?)'],
    ['symbol not a ticker', { ...originalTick, symbol: 'I VE' }, 'symbol: must be a ticker: 1-10 letters, digits, "." or "-", starting with a letter'],
    ['price as string', { ...originalTick, ask: '94.19' }, 'ask: must be a number'],
  ])('rejects a %s with a reason', (_name, input, reason) => {
    const result = RawTick.safeParse(input);
    expect(result.success).toBe(false);
    if (!result.success) expect(describeIssues(result.error)).toBe(reason);
  });

  it('rejects NaN and Infinity', () => {
    expect(RawTick.safeParse({ ...originalTick, bid: Number.NaN }).success).toBe(false);
    expect(RawTick.safeParse({ ...originalTick, ask: Number.POSITIVE_INFINITY }).success).toBe(false);
  });

  it('names every missing field', () => {
    const result = RawTick.safeParse({ symbol: 'IVE' });
    expect(result.success).toBe(false);
    if (!result.success) {
      expect(describeIssues(result.error)).toBe(
        'exchange: must be a string; bid: must be a number; ask: must be a number; timestamp: must be a number of epoch seconds',
      );
    }
  });
});

describe('PortfolioOrder', () => {
  const order = {
    taxpayer_id: 42,
    portfolio_order_id: '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11',
    order_type: 'BUY',
    amount: 1000,
    portfolio: [
      ['VTI', 0.6],
      ['IVE', 0.4],
    ],
    priority: 1,
    timestamp: 1438539936.5,
  };

  it("accepts the original's [symbol, weight] pairs and normalizes them to objects", () => {
    expect(PortfolioOrder.parse(order).portfolio).toEqual([
      { symbol: 'VTI', weight: 0.6 },
      { symbol: 'IVE', weight: 0.4 },
    ]);
  });

  it('accepts {symbol, weight} objects', () => {
    const parsed = PortfolioOrder.parse({ ...order, portfolio: [{ symbol: 'VTI', weight: 1 }] });
    expect(parsed.portfolio).toEqual([{ symbol: 'VTI', weight: 1 }]);
  });

  it('accepts weights summing to 1 within 1e-6', () => {
    expect(PortfolioOrder.safeParse({ ...order, portfolio: [['VTI', 0.3333333], ['IVE', 0.3333333], ['IWS', 0.3333334]] }).success).toBe(true);
  });

  it.each([
    ['weights not summing to 1', { portfolio: [['VTI', 0.5], ['IVE', 0.4]] }, 'portfolio: weights must sum to 1 (±1e-6), they sum to 0.9'],
    ['unknown order type', { order_type: 'HOLD' }, 'order_type: must be "BUY" or "SELL"'],
    ['zero amount', { amount: 0 }, 'amount: must be greater than 0'],
    ['priority 3', { priority: 3 }, 'priority: must be 1 or 2'],
    ['duplicate symbols', { portfolio: [['VTI', 0.5], ['VTI', 0.5]] }, 'portfolio: each symbol may appear only once'],
    ['non-integer taxpayer', { taxpayer_id: 4.2 }, 'taxpayer_id: must be an integer'],
    ['bad uuid', { portfolio_order_id: 'abc' }, 'portfolio_order_id: must be a UUID string'],
  ])('rejects %s', (_name, change, reason) => {
    const result = PortfolioOrder.safeParse({ ...order, ...change });
    expect(result.success).toBe(false);
    if (!result.success) expect(describeIssues(result.error)).toBe(reason);
  });
});
