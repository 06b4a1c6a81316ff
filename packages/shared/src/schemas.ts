/**
 * Message contracts of every topic. These zod schemas are the single source of truth: types are
 * inferred from them and every service validates at its input edge. Input schemas accept exactly
 * what the original system's producers sent (see DESIGN.md), and are strict where money is involved.
 */
import { z } from 'zod';

/** 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in epoch seconds: anything outside is not a real event time. */
export const MIN_EPOCH_SECONDS = 946_684_800;
export const MAX_EPOCH_SECONDS = 4_102_444_800;

export const EpochSeconds = z
  .number({ error: 'must be a number of epoch seconds' })
  .min(MIN_EPOCH_SECONDS, { error: 'must be epoch seconds on or after 2000-01-01 (milliseconds or a wrong clock?)' })
  .max(MAX_EPOCH_SECONDS, { error: 'must be epoch seconds before 2100-01-01 (milliseconds instead of seconds?)' });

export const TickerSymbol = z
  .string({ error: 'must be a string' })
  .trim()
  .toUpperCase()
  .regex(/^[A-Z][A-Z0-9.-]{0,9}$/, { error: 'must be a ticker: 1-10 letters, digits, "." or "-", starting with a letter' });
export type TickerSymbol = z.infer<typeof TickerSymbol>;

export const Exchange = z
  .string({ error: 'must be a string' })
  .trim()
  .toUpperCase()
  .regex(/^[A-Z0-9][A-Z0-9_. -]{0,31}$/, { error: 'must be an exchange name: 1-32 letters, digits, "_", ".", "-" or spaces' });

export const Price = z
  .number({ error: 'must be a number' })
  .positive({ error: 'must be a positive price' })
  .max(1e9, { error: 'must be below 1e9' });

/** A tick exactly as the original feed sent it: {"ask", "timestamp", "symbol", "bid", "exchange"}. */
export const RawTick = z
  .object({
    symbol: TickerSymbol,
    exchange: Exchange,
    bid: Price,
    ask: Price,
    timestamp: EpochSeconds,
  })
  .refine((tick) => tick.bid <= tick.ask, { error: 'bid must not exceed ask (crossed quote)', path: ['bid'] });

/** A validated, normalized tick on the `prices` topic, keyed by symbol. Timestamp is rounded to microseconds. */
export const PriceTick = z.object({
  symbol: TickerSymbol,
  exchange: Exchange,
  bid: Price,
  ask: Price,
  timestamp: EpochSeconds,
});
export type PriceTick = z.infer<typeof PriceTick>;

export const OrderType = z.enum(['BUY', 'SELL'], { error: 'must be "BUY" or "SELL"' });
export type OrderType = z.infer<typeof OrderType>;

export const Priority = z.union([z.literal(1), z.literal(2)], { error: 'must be 1 or 2' });
export type Priority = z.infer<typeof Priority>;

const Uuid = z.guid({ error: 'must be a UUID string' });
const TaxpayerId = z.int({ error: 'must be an integer' }).positive({ error: 'must be a positive integer' });
const Money = z
  .number({ error: 'must be a number of dollars' })
  .positive({ error: 'must be greater than 0' })
  .max(1e12, { error: 'must be below 1e12' });
const Weight = z
  .number({ error: 'must be a number' })
  .gt(0, { error: 'must be greater than 0' })
  .lte(1, { error: 'must be at most 1' });

/** A portfolio component: the original serialized named tuples as [symbol, weight]; objects are accepted too. */
export const PortfolioComponent = z
  .union([z.tuple([TickerSymbol, Weight]), z.object({ symbol: TickerSymbol, weight: Weight })], {
    error: 'must be [symbol, weight] or {"symbol", "weight"}',
  })
  .transform((c) => (Array.isArray(c) ? { symbol: c[0], weight: c[1] } : c));
export type PortfolioComponent = z.infer<typeof PortfolioComponent>;

export const WEIGHT_SUM_TOLERANCE = 1e-6;

export const PortfolioOrder = z
  .object({
    taxpayer_id: TaxpayerId,
    portfolio_order_id: Uuid,
    order_type: OrderType,
    amount: Money,
    portfolio: z.array(PortfolioComponent).min(1, { error: 'must have at least one component' }).max(100),
    priority: Priority,
    timestamp: EpochSeconds,
  })
  .superRefine((order, ctx) => {
    const sum = order.portfolio.reduce((acc, c) => acc + c.weight, 0);
    if (Math.abs(sum - 1) > WEIGHT_SUM_TOLERANCE) {
      ctx.addIssue({ code: 'custom', path: ['portfolio'], message: `weights must sum to 1 (±1e-6), they sum to ${sum}` });
    }
    const symbols = new Set(order.portfolio.map((c) => c.symbol));
    if (symbols.size !== order.portfolio.length) {
      ctx.addIssue({ code: 'custom', path: ['portfolio'], message: 'each symbol may appear only once' });
    }
  });
export type PortfolioOrder = z.infer<typeof PortfolioOrder>;

/** One symbol's share of a portfolio order, keyed by symbol on `orders.components`. */
export const ComponentOrder = z.object({
  taxpayer_id: TaxpayerId,
  portfolio_order_id: Uuid,
  component_order_id: z.string().min(1),
  order_type: OrderType,
  symbol: TickerSymbol,
  amount: Money,
  priority: Priority,
  timestamp: EpochSeconds,
});
export type ComponentOrder = z.infer<typeof ComponentOrder>;

/** The share of an execution that belongs to one component order. */
export const Allocation = z.object({
  taxpayer_id: TaxpayerId,
  portfolio_order_id: Uuid,
  component_order_id: z.string().min(1),
  order_type: OrderType,
  requested_amount: Money,
  requested_shares: z.number().nonnegative(),
  timestamp: EpochSeconds,
});
export type Allocation = z.infer<typeof Allocation>;

/** The original's "market order aka execution", plus execution_id and allocations. */
export const Execution = z.object({
  taxpayer_id: TaxpayerId,
  portfolio_order_id: Uuid,
  component_order_id: z.string().min(1),
  market_order_id: z.string().min(1),
  execution_id: z.string().min(1).optional(),
  order_type: OrderType,
  symbol: TickerSymbol,
  requested_amount: z.number().nonnegative(),
  requested_shares: z.number().nonnegative(),
  requested_price: Price,
  timestamp: EpochSeconds,
  allocations: z.array(Allocation).min(1).optional(),
  /** Blocks of netted priority-2 orders: the net side; FLAT when buys and sells offset exactly. */
  net_side: z.enum(['BUY', 'SELL', 'FLAT']).optional(),
});
export type Execution = z.infer<typeof Execution>;

export const Fill = z.object({
  taxpayer_id: TaxpayerId,
  portfolio_order_id: Uuid,
  component_order_id: z.string().min(1),
  market_order_id: z.string().min(1),
  execution_id: z.string().min(1),
  fill_id: z.string().min(1),
  symbol: TickerSymbol,
  order_type: OrderType,
  filled_amount: z.number().nonnegative(),
  filled_shares: z.number().nonnegative(),
  filled_price: Price,
  delta_shares_position: z.number(),
  delta_cash_position: z.number(),
  timestamp: EpochSeconds,
  order_timestamp: EpochSeconds.optional(),
});
export type Fill = z.infer<typeof Fill>;

export const Position = z.object({
  taxpayer_id: TaxpayerId,
  shares: z.record(z.string(), z.number()),
  cash: z.number(),
  fills: z.int().nonnegative(),
  timestamp: EpochSeconds,
});
export type Position = z.infer<typeof Position>;

/** One line per problem, each naming the field: `bid: bid must not exceed ask (crossed quote)`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(message)'}: ${issue.message}`)
    .join('; ');
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/**
 * A quicker check of a schema's common case: the schema's own result for a message it accepts as
 * it is, undefined for anything else (the schema then decides). See fast-paths.ts.
 */
export type FastPath<T> = (json: unknown) => T | undefined;
const fastPaths = new Map<z.ZodType, FastPath<unknown>>();

export function registerFastPath<T extends z.ZodType>(schema: T, check: FastPath<z.infer<T>>): void {
  fastPaths.set(schema, check);
}

export function fastPathOf<T extends z.ZodType>(schema: T): FastPath<z.infer<T>> | undefined {
  return fastPaths.get(schema) as FastPath<z.infer<T>> | undefined;
}

/**
 * A message's bytes → a value of the schema, or the reason why not (for the DLQ and logs).
 * `fast` false skips the schema's fast path (tests compare both ways).
 */
export function decodeMessage<T extends z.ZodType>(schema: T, bytes: Buffer | null, fast = true): Decoded<z.infer<T>> {
  if (bytes === null || bytes.length === 0) return { ok: false, reason: 'empty message' };
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
  if (fast) {
    const value = fastPaths.get(schema)?.(json);
    if (value !== undefined) return { ok: true, value: value as z.infer<T> };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}
