/**
 * Reproducible portfolio orders, executions and fills in the original system's JSON, for the seed
 * scripts and the tests.
 */
import { INSTRUMENTS } from './market.ts';
import { Random } from './random.ts';
import type { GeneratedMessage } from './ticks.ts';

export interface OrderOptions {
  readonly count: number;
  readonly seed: number;
  readonly accounts: number;
  /** Emit portfolios as [symbol, weight] pairs like the original (default: {symbol, weight} objects). */
  readonly pairs?: boolean;
  /** 1, 2, or undefined for a mix (70% priority 1). */
  readonly priority?: 1 | 2;
  readonly symbols?: readonly string[];
  /** How many of the `count` messages are invalid on purpose. */
  readonly invalid?: number;
  /** Epoch seconds of every order's timestamp (default: the wall clock when generated). */
  readonly timestamp?: () => number;
  readonly maxComponents?: number;
}

const cents = (rng: Random, min: number, max: number) => rng.int(min * 100, max * 100) / 100;

/** Weights in whole basis points that sum to 10,000, as fractions. */
function weights(rng: Random, n: number): number[] {
  const raw = Array.from({ length: n }, () => rng.int(1, 100));
  const total = raw.reduce((a, b) => a + b, 0);
  const bps = raw.map((r) => Math.max(1, Math.floor((r / total) * 10_000)));
  bps[0]! += 10_000 - bps.reduce((a, b) => a + b, 0);
  return bps.map((b) => b / 10_000);
}

const INVALID_ORDERS: readonly ((order: Record<string, unknown>) => string)[] = [
  (o) => JSON.stringify({ ...o, portfolio: [['VTI', 0.5], ['IVE', 0.4]] }),
  (o) => JSON.stringify({ ...o, order_type: 'HOLD' }),
  (o) => JSON.stringify({ ...o, amount: -100 }),
  (o) => JSON.stringify({ ...o, priority: 3 }),
  (o) => JSON.stringify({ ...o, portfolio_order_id: 'not-a-uuid' }),
  () => '{"taxpayer_id": 1, "truncated',
];

export function* generateOrders(options: OrderOptions): Generator<GeneratedMessage & { order?: Record<string, unknown> }> {
  const rng = new Random(options.seed);
  const symbols = options.symbols ?? INSTRUMENTS.map((i) => i.symbol);
  const invalidAt = new Set<number>();
  while (invalidAt.size < Math.min(options.invalid ?? 0, options.count)) invalidAt.add(rng.int(0, options.count - 1));
  for (let i = 0; i < options.count; i++) {
    const n = rng.int(1, Math.min(options.maxComponents ?? 5, symbols.length));
    const chosen: string[] = [];
    while (chosen.length < n) {
      const s = rng.pick(symbols);
      if (!chosen.includes(s)) chosen.push(s);
    }
    const w = weights(rng, n);
    const order = {
      taxpayer_id: rng.int(1, options.accounts),
      portfolio_order_id: rng.uuid(),
      order_type: rng.next() < 0.6 ? 'BUY' : 'SELL',
      amount: cents(rng, 100, 10_000),
      portfolio: chosen.map((symbol, k) => (options.pairs === true ? [symbol, w[k]!] : { symbol, weight: w[k]! })),
      priority: options.priority ?? (rng.next() < 0.7 ? 1 : 2),
      timestamp: options.timestamp?.() ?? Date.now() / 1000,
    };
    if (invalidAt.has(i)) yield { key: order.portfolio_order_id, value: rng.pick(INVALID_ORDERS)(order), valid: false };
    else yield { key: order.portfolio_order_id, value: JSON.stringify(order), valid: true, order };
  }
}

export interface ExecutionOptions {
  readonly count: number;
  readonly seed: number;
  readonly accounts: number;
  /** Emit allocations (ours) instead of the original's plain executions. */
  readonly allocations?: boolean;
}

/** Executions as the original's "market order aka execution", optionally with allocations. */
export function* generateExecutions(options: ExecutionOptions): Generator<GeneratedMessage> {
  const rng = new Random(options.seed);
  for (let i = 0; i < options.count; i++) {
    const instrument = rng.pick(INSTRUMENTS);
    const price = Math.round(instrument.price * (1 + (rng.next() - 0.5) * 0.02) * 1e6) / 1e6;
    const amount = cents(rng, 100, 5_000);
    const shares = Math.floor((amount / price) * 1e6) / 1e6;
    const portfolioOrderId = rng.uuid();
    const componentOrderId = `${portfolioOrderId}/${instrument.symbol}`;
    const orderType = rng.next() < 0.6 ? 'BUY' : 'SELL';
    const taxpayerId = rng.int(1, options.accounts);
    const now = Date.now() / 1000;
    const execution: Record<string, unknown> = {
      taxpayer_id: taxpayerId,
      portfolio_order_id: portfolioOrderId,
      component_order_id: componentOrderId,
      market_order_id: `mo:${componentOrderId}`,
      order_type: orderType,
      symbol: instrument.symbol,
      requested_amount: amount,
      requested_shares: shares,
      requested_price: price,
      timestamp: now,
    };
    if (options.allocations === true) {
      execution['execution_id'] = `ex:${componentOrderId}`;
      execution['allocations'] = [
        { taxpayer_id: taxpayerId, portfolio_order_id: portfolioOrderId, component_order_id: componentOrderId, order_type: orderType, requested_amount: amount, requested_shares: shares, timestamp: now },
      ];
    }
    yield { key: instrument.symbol, value: JSON.stringify(execution), valid: true };
  }
}

/** Fills with the original's fields, keyed by taxpayer_id, for testing the stages after fill-publisher. */
export function* generateFills(options: { count: number; seed: number; accounts: number }): Generator<GeneratedMessage> {
  const rng = new Random(options.seed);
  for (let i = 0; i < options.count; i++) {
    const instrument = rng.pick(INSTRUMENTS);
    const price = Math.round(instrument.price * (1 + (rng.next() - 0.5) * 0.02) * 1e6) / 1e6;
    const shares = rng.int(1_000, 50_000_000) / 1e6;
    const amount = Math.round(shares * price * 1e6) / 1e6;
    const buy = rng.next() < 0.6;
    const portfolioOrderId = rng.uuid();
    const componentOrderId = `${portfolioOrderId}/${instrument.symbol}`;
    const now = Date.now() / 1000;
    const fill = {
      taxpayer_id: rng.int(1, options.accounts),
      portfolio_order_id: portfolioOrderId,
      component_order_id: componentOrderId,
      market_order_id: `mo:${componentOrderId}`,
      execution_id: `ex:${componentOrderId}`,
      fill_id: `ex:${componentOrderId}/${componentOrderId}`,
      symbol: instrument.symbol,
      order_type: buy ? 'BUY' : 'SELL',
      filled_amount: amount,
      filled_shares: shares,
      filled_price: price,
      delta_shares_position: buy ? shares : -shares,
      delta_cash_position: buy ? -amount : amount,
      timestamp: now,
      order_timestamp: now,
    };
    yield { key: String(fill.taxpayer_id), value: JSON.stringify(fill), valid: true };
  }
}
