import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  ComponentOrder,
  decodeMessage,
  Execution,
  fastPathOf,
  Fill,
  isFillAsIs,
  isPositionAsIs,
  MAX_EPOCH_SECONDS,
  MIN_EPOCH_SECONDS,
  PortfolioOrder,
  Position,
  PriceTick,
} from './index.ts';

/** Deterministic random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  return { next, pick, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)) };
}
type Random = ReturnType<typeof random>;

const SYMBOLS = ['A', 'MSFT', 'BRK.B', 'BF-B', 'ABCDEFGHIJ', 'X1'];
const EXCHANGES = ['NASDAQ', 'NYSE ARCA', 'LSE_1', 'X.Y-Z', '0'];
const hex = (r: Random, n: number) => Array.from({ length: n }, () => r.pick([...'0123456789abcdefABCDEF'])).join('');
const uuid = (r: Random) => `${hex(r, 8)}-${hex(r, 4)}-${hex(r, 4)}-${hex(r, 4)}-${hex(r, 12)}`;
const epoch = (r: Random) => r.pick([MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS, 1_763_800_000.123456, MIN_EPOCH_SECONDS + r.next() * 1e9]);
const positive = (r: Random, max: number) => r.pick([max, 1e-9, 0.01, r.next() * max || 1]);
const nonNegative = (r: Random, max: number) => r.pick([0, positive(r, max)]);
const signed = (r: Random) => r.pick([0, -12.5, 3, (r.next() - 0.5) * 1e7]);
const taxpayer = (r: Random) => r.pick([1, Number.MAX_SAFE_INTEGER, r.int(1, 1_000_000)]);
/** Sometimes a field the schema does not know (it is dropped). */
const extra = (r: Random): Record<string, unknown> => (r.next() < 0.2 ? { note: 'x', __proto__x: 1 } : {});

const validPosition = (r: Random) => ({
  taxpayer_id: taxpayer(r),
  shares: Object.fromEntries(SYMBOLS.slice(0, r.int(0, SYMBOLS.length)).map((symbol) => [symbol, signed(r)])),
  cash: signed(r),
  fills: r.pick([0, 1, r.int(2, 1_000_000), Number.MAX_SAFE_INTEGER]),
  timestamp: epoch(r),
  ...extra(r),
});
const validPrice = (r: Random) => ({
  ...extra(r),
  symbol: r.pick(SYMBOLS),
  exchange: r.pick(EXCHANGES),
  bid: positive(r, 1e9),
  ask: positive(r, 1e9),
  timestamp: epoch(r),
});
const validComponent = (r: Random) => ({
  taxpayer_id: taxpayer(r),
  portfolio_order_id: uuid(r),
  component_order_id: `${uuid(r)}:${r.pick(SYMBOLS)}`,
  order_type: r.pick(['BUY', 'SELL']),
  symbol: r.pick(SYMBOLS),
  amount: positive(r, 1e12),
  priority: r.pick([1, 2]),
  timestamp: epoch(r),
  ...extra(r),
});
const validPortfolioOrder = (r: Random) => {
  const symbols = [...SYMBOLS].sort(() => r.next() - 0.5).slice(0, r.int(1, SYMBOLS.length));
  const raw = symbols.map(() => r.next() + 0.01);
  const total = raw.reduce((a, b) => a + b, 0);
  return {
    taxpayer_id: taxpayer(r),
    portfolio_order_id: uuid(r),
    order_type: r.pick(['BUY', 'SELL']),
    amount: positive(r, 1e12),
    // The original's [symbol, weight] pairs, or objects (sometimes with a field the schema drops).
    portfolio: symbols.map((symbol, i) => (r.next() < 0.5 ? [symbol, raw[i]! / total] : { symbol, weight: raw[i]! / total, ...extra(r) })),
    priority: r.pick([1, 2]),
    timestamp: epoch(r),
    ...extra(r),
  };
};
const validAllocation = (r: Random) => ({
  taxpayer_id: taxpayer(r),
  portfolio_order_id: uuid(r),
  component_order_id: `${uuid(r)}:MSFT`,
  order_type: r.pick(['BUY', 'SELL']),
  requested_amount: positive(r, 1e12),
  requested_shares: nonNegative(r, 1e6),
  timestamp: epoch(r),
});
const validExecution = (r: Random) => {
  const e: Record<string, unknown> = {
    taxpayer_id: taxpayer(r),
    portfolio_order_id: uuid(r),
    component_order_id: `${uuid(r)}:MSFT`,
    market_order_id: uuid(r),
    order_type: r.pick(['BUY', 'SELL']),
    symbol: r.pick(SYMBOLS),
    requested_amount: nonNegative(r, 1e12),
    requested_shares: nonNegative(r, 1e6),
    requested_price: positive(r, 1e9),
    timestamp: epoch(r),
    ...extra(r),
  };
  if (r.next() < 0.5) e['execution_id'] = `blk:${uuid(r)}`;
  if (r.next() < 0.5) e['allocations'] = Array.from({ length: r.int(1, 4) }, () => validAllocation(r));
  if (r.next() < 0.5) e['net_side'] = r.pick(['BUY', 'SELL', 'FLAT']);
  return e;
};
const validFill = (r: Random) => {
  const f: Record<string, unknown> = {
    ...extra(r),
    taxpayer_id: taxpayer(r),
    portfolio_order_id: uuid(r),
    component_order_id: `${uuid(r)}:MSFT`,
    market_order_id: uuid(r),
    execution_id: uuid(r),
    fill_id: `${uuid(r)}:1`,
    symbol: r.pick(SYMBOLS),
    order_type: r.pick(['BUY', 'SELL']),
    filled_amount: nonNegative(r, 1e12),
    filled_shares: nonNegative(r, 1e6),
    filled_price: positive(r, 1e9),
    delta_shares_position: signed(r),
    delta_cash_position: signed(r),
    timestamp: epoch(r),
  };
  if (r.next() < 0.7) f['order_timestamp'] = epoch(r);
  return f;
};

/** Values that break (or, for some fields, keep) a field: wrong types, ranges, case, spaces. */
const BAD_VALUES: unknown[] = [
  null, '', 'x', '1', 0, -1, 1.5, -0.01, true, [], {}, 2 ** 53, MIN_EPOCH_SECONDS - 1, MAX_EPOCH_SECONDS + 1,
  1e9 + 1, 1e12 + 1, ' MSFT', 'msft', 'MSFT ', 'ABCDEFGHIJK', 'NYSE ', ' NYSE', 'nyse', '9ABC', 'buy', 'BUY ', 3, 'FLAT',
  '{0b8a3bd8-2d1a-4d6c-9a8e-5b0a7c1f4e21}', '0B8A3BD8-2D1A-4D6C-9A8E-5B0A7C1F4E21', 1_763_800_000,
];

function mutate(r: Random, message: unknown): unknown {
  if (r.next() < 0.03) return r.pick([[], 7, 'text', null, [message]]);
  const copy = structuredClone(message) as Record<string, unknown>;
  let target = copy;
  const allocations = copy['allocations'];
  if (Array.isArray(allocations) && r.next() < 0.3) {
    if (r.next() < 0.15) {
      copy['allocations'] = r.pick([[], [{}], 'all', null]);
      return copy;
    }
    target = allocations[r.int(0, allocations.length - 1)] as Record<string, unknown>;
  }
  const portfolio = copy['portfolio'];
  if (Array.isArray(portfolio) && r.next() < 0.4) {
    const i = r.int(0, portfolio.length - 1);
    const component = portfolio[i] as unknown;
    const roll = r.next();
    if (roll < 0.1) copy['portfolio'] = r.pick([[], 'all', null, [...portfolio, portfolio[0]]]);
    else if (roll < 0.2) portfolio[i] = r.pick([null, 'MSFT', [], ['MSFT'], ['MSFT', 0.5, 1], { symbol: 'MSFT' }]);
    else if (Array.isArray(component)) component[r.int(0, 1)] = r.pick([...BAD_VALUES, 0.5, 1]);
    else if (typeof component === 'object' && component !== null) (component as Record<string, unknown>)[r.pick(['symbol', 'weight'])] = r.pick([...BAD_VALUES, 0.5, 1]);
    return copy;
  }
  const shares = copy['shares'];
  if (typeof shares === 'object' && shares !== null && Object.keys(shares).length > 0 && r.next() < 0.3) {
    if (r.next() < 0.15) {
      copy['shares'] = r.pick([[], [1], 'all', null, { __proto__key: 'x' }]);
      return copy;
    }
    target = shares as Record<string, unknown>;
  }
  const key = r.pick(Object.keys(target));
  if (r.next() < 0.2) delete target[key];
  else target[key] = r.pick(BAD_VALUES);
  return copy;
}

/** The schema's answer and decodeMessage's (with the fast path) must be the same, field order included. */
function expectSameAsSchema(schema: z.ZodType, message: unknown): 'fast' | 'schema-ok' | 'rejected' {
  const bytes = Buffer.from(JSON.stringify(message));
  const withFast = decodeMessage(schema, bytes);
  const schemaOnly = decodeMessage(schema, bytes, false);
  expect(withFast).toEqual(schemaOnly);
  if (withFast.ok && schemaOnly.ok) expect(JSON.stringify(withFast.value)).toBe(JSON.stringify(schemaOnly.value));
  const fast = fastPathOf(schema)!(JSON.parse(bytes.toString()));
  if (fast !== undefined) {
    expect(schemaOnly.ok, JSON.stringify(message)).toBe(true);
    return 'fast';
  }
  return schemaOnly.ok ? 'schema-ok' : 'rejected';
}

const CASES = [
  ['PriceTick', PriceTick, validPrice],
  ['ComponentOrder', ComponentOrder, validComponent],
  ['PortfolioOrder', PortfolioOrder, validPortfolioOrder],
  ['Execution', Execution, validExecution],
  ['Fill', Fill, validFill],
  ['Position', Position, validPosition],
] as const;

describe('fast paths of decodeMessage', () => {
  for (const [name, schema, valid] of CASES) {
    it(`${name}: answers every valid message itself, exactly as the schema does`, () => {
      expect(fastPathOf(schema)).toBeDefined();
      const r = random(1);
      for (let i = 0; i < 2_000; i++) expect(expectSameAsSchema(schema, valid(r))).toBe('fast');
    });

    it(`${name}: on 20,000 broken messages, gives the schema's answer and never accepts what the schema rejects`, () => {
      const r = random(2);
      const outcomes = { fast: 0, 'schema-ok': 0, rejected: 0 };
      for (let i = 0; i < 20_000; i++) outcomes[expectSameAsSchema(schema, mutate(r, valid(r)))]++;
      // Most mutations break the message; some keep it valid (a mixed-case UUID, an unknown field
      // removed, another valid timestamp), which the fast path still answers.
      expect(outcomes.rejected).toBeGreaterThan(12_000);
      expect(outcomes.fast).toBeGreaterThan(100);
    });
  }

  for (const [name, asIs, schema, valid, seed] of [
    ['isPositionAsIs', isPositionAsIs, Position, validPosition, 5],
    ['isFillAsIs', isFillAsIs, Fill, validFill, 6],
  ] as const) {
    it(`${name} says yes exactly where the fast path answers, on 2,000 valid and 20,000 broken messages`, () => {
      const r = random(seed);
      let accepted = 0;
      for (let i = 0; i < 22_000; i++) {
        const message = JSON.parse(JSON.stringify(i < 2_000 ? valid(r) : mutate(r, valid(r)))) as unknown;
        const fast = fastPathOf(schema as z.ZodType)!(message);
        expect(asIs(message), JSON.stringify(message)).toBe(fast !== undefined);
        if (fast !== undefined) accepted++;
      }
      expect(accepted).toBeGreaterThan(2_000);
    });
  }

  it('leaves to the schema what it normalizes: symbols in lower case or with spaces come out upper-case and trimmed', () => {
    const r = random(3);
    const message = { ...validComponent(r), symbol: ' msft ' };
    expect(fastPathOf(ComponentOrder)!(message)).toBeUndefined();
    const decoded = decodeMessage(ComponentOrder, Buffer.from(JSON.stringify(message)));
    expect(decoded.ok && decoded.value.symbol).toBe('MSFT');
  });

  it('drops fields the schema does not know and keeps the schema order of optional ones', () => {
    const r = random(4);
    const { execution_id: _, allocations: __, net_side: ___, ...plain } = validExecution(r);
    const message = { net_side: 'FLAT', ...plain, execution_id: 'blk:1', surplus: true };
    const decoded = decodeMessage(Execution, Buffer.from(JSON.stringify(message)));
    expect(decoded.ok).toBe(true);
    if (decoded.ok) {
      expect(Object.keys(decoded.value)).toEqual([
        'taxpayer_id', 'portfolio_order_id', 'component_order_id', 'market_order_id', 'execution_id', 'order_type',
        'symbol', 'requested_amount', 'requested_shares', 'requested_price', 'timestamp', 'net_side',
      ]);
    }
  });
});
