/**
 * Hand-written checks of the messages the services pass each other (component orders, prices,
 * executions, fills, position snapshots), for decodeMessage: validating them with zod took 15-25 % of a service's CPU.
 * Each check answers only for a message its schema accepts unchanged (symbols already upper-case
 * and trimmed, every field of the right type and range) and then returns what the schema would
 * return: the schema's fields in the schema's order, optional ones only when present, unknown ones
 * dropped. For anything else it returns undefined and the schema decides, with its reasons.
 * fast-paths.test.ts holds each check to its schema on valid messages and on thousands of broken ones.
 */
import {
  Allocation,
  ComponentOrder,
  Execution,
  Fill,
  MAX_EPOCH_SECONDS,
  MIN_EPOCH_SECONDS,
  PortfolioOrder,
  Position,
  PriceTick,
  registerFastPath,
  WEIGHT_SUM_TOLERANCE,
} from './schemas.ts';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isEpoch = (v: unknown): v is number => isNumber(v) && v >= MIN_EPOCH_SECONDS && v <= MAX_EPOCH_SECONDS;
const isPrice = (v: unknown): v is number => isNumber(v) && v > 0 && v <= 1e9;
const isMoney = (v: unknown): v is number => isNumber(v) && v > 0 && v <= 1e12;
const isNonNegative = (v: unknown): v is number => isNumber(v) && v >= 0;
const isTaxpayer = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isOrderType = (v: unknown): v is 'BUY' | 'SELL' => v === 'BUY' || v === 'SELL';
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const isUuid = (v: unknown): v is string => typeof v === 'string' && GUID.test(v);
/** Symbols the schema's trim and upper-case leave as they are. */
const SYMBOL = /^[A-Z][A-Z0-9.-]{0,9}$/;
const isSymbol = (v: unknown): v is string => typeof v === 'string' && SYMBOL.test(v);
/** Exchanges the schema's trim and upper-case leave as they are (no trailing space). */
const EXCHANGE = /^[A-Z0-9][A-Z0-9_. -]{0,31}$/;
const isExchange = (v: unknown): v is string => typeof v === 'string' && EXCHANGE.test(v) && !v.endsWith(' ');

function priceTick(v: unknown): PriceTick | undefined {
  if (!isObject(v)) return undefined;
  const { symbol, exchange, bid, ask, timestamp } = v;
  if (!isSymbol(symbol) || !isExchange(exchange) || !isPrice(bid) || !isPrice(ask) || !isEpoch(timestamp)) return undefined;
  return { symbol, exchange, bid, ask, timestamp };
}

function componentOrder(v: unknown): ComponentOrder | undefined {
  if (!isObject(v)) return undefined;
  const { taxpayer_id, portfolio_order_id, component_order_id, order_type, symbol, amount, priority, timestamp } = v;
  if (
    !isTaxpayer(taxpayer_id) ||
    !isUuid(portfolio_order_id) ||
    !isText(component_order_id) ||
    !isOrderType(order_type) ||
    !isSymbol(symbol) ||
    !isMoney(amount) ||
    (priority !== 1 && priority !== 2) ||
    !isEpoch(timestamp)
  ) {
    return undefined;
  }
  return { taxpayer_id, portfolio_order_id, component_order_id, order_type, symbol, amount, priority, timestamp };
}

const isWeight = (v: unknown): v is number => isNumber(v) && v > 0 && v <= 1;

/**
 * A portfolio order as its producers send it (components as [symbol, weight] pairs or
 * {symbol, weight} objects), answered when every component is in the form the schema leaves as it
 * is, the weights sum to 1 (±1e-6, summed in the schema's order) and no symbol repeats.
 */
function portfolioOrder(v: unknown): PortfolioOrder | undefined {
  if (!isObject(v)) return undefined;
  const { taxpayer_id, portfolio_order_id, order_type, amount, portfolio, priority, timestamp } = v;
  if (
    !isTaxpayer(taxpayer_id) ||
    !isUuid(portfolio_order_id) ||
    !isOrderType(order_type) ||
    !isMoney(amount) ||
    !Array.isArray(portfolio) ||
    portfolio.length < 1 ||
    portfolio.length > 100 ||
    (priority !== 1 && priority !== 2) ||
    !isEpoch(timestamp)
  ) {
    return undefined;
  }
  const components = new Array<{ symbol: string; weight: number }>(portfolio.length);
  let sum = 0;
  for (let i = 0; i < portfolio.length; i++) {
    const c: unknown = portfolio[i];
    let symbol: unknown;
    let weight: unknown;
    if (Array.isArray(c)) {
      if (c.length !== 2) return undefined;
      [symbol, weight] = c as unknown[];
    } else if (isObject(c)) {
      ({ symbol, weight } = c);
    } else return undefined;
    if (!isSymbol(symbol) || !isWeight(weight)) return undefined;
    for (let j = 0; j < i; j++) if (components[j]!.symbol === symbol) return undefined;
    components[i] = { symbol, weight };
    sum += weight;
  }
  if (Math.abs(sum - 1) > WEIGHT_SUM_TOLERANCE) return undefined;
  return { taxpayer_id, portfolio_order_id, order_type, amount, portfolio: components, priority, timestamp };
}

function allocation(v: unknown): Allocation | undefined {
  if (!isObject(v)) return undefined;
  const { taxpayer_id, portfolio_order_id, component_order_id, order_type, requested_amount, requested_shares, timestamp } = v;
  if (
    !isTaxpayer(taxpayer_id) ||
    !isUuid(portfolio_order_id) ||
    !isText(component_order_id) ||
    !isOrderType(order_type) ||
    !isMoney(requested_amount) ||
    !isNonNegative(requested_shares) ||
    !isEpoch(timestamp)
  ) {
    return undefined;
  }
  return { taxpayer_id, portfolio_order_id, component_order_id, order_type, requested_amount, requested_shares, timestamp };
}

function execution(v: unknown): Execution | undefined {
  if (!isObject(v)) return undefined;
  const { taxpayer_id, portfolio_order_id, component_order_id, market_order_id, execution_id, order_type, symbol } = v;
  const { requested_amount, requested_shares, requested_price, timestamp, allocations, net_side } = v;
  if (
    !isTaxpayer(taxpayer_id) ||
    !isUuid(portfolio_order_id) ||
    !isText(component_order_id) ||
    !isText(market_order_id) ||
    (execution_id !== undefined && !isText(execution_id)) ||
    !isOrderType(order_type) ||
    !isSymbol(symbol) ||
    !isNonNegative(requested_amount) ||
    !isNonNegative(requested_shares) ||
    !isPrice(requested_price) ||
    !isEpoch(timestamp) ||
    (net_side !== undefined && net_side !== 'BUY' && net_side !== 'SELL' && net_side !== 'FLAT')
  ) {
    return undefined;
  }
  let checked: Allocation[] | undefined;
  if (allocations !== undefined) {
    if (!Array.isArray(allocations) || allocations.length === 0) return undefined;
    checked = new Array<Allocation>(allocations.length);
    for (let i = 0; i < allocations.length; i++) {
      const a = allocation(allocations[i]);
      if (a === undefined) return undefined;
      checked[i] = a;
    }
  }
  const out: Execution = { taxpayer_id, portfolio_order_id, component_order_id, market_order_id } as Execution;
  if (execution_id !== undefined) out.execution_id = execution_id;
  Object.assign(out, { order_type, symbol, requested_amount, requested_shares, requested_price, timestamp });
  if (checked !== undefined) out.allocations = checked;
  if (net_side !== undefined) out.net_side = net_side;
  return out;
}

/**
 * Whether a parsed fill is one the Fill fast path answers, checked in place: nothing is copied
 * (extra fields stay on it). For a reader that keeps the fill's bytes and needs only its account
 * and id now (portfolio's store).
 */
export function isFillAsIs(v: unknown): v is Fill {
  if (!isObject(v)) return false;
  const { taxpayer_id, portfolio_order_id, component_order_id, market_order_id, execution_id, fill_id, symbol, order_type } = v;
  const { filled_amount, filled_shares, filled_price, delta_shares_position, delta_cash_position, timestamp, order_timestamp } = v;
  return !(
    !isTaxpayer(taxpayer_id) ||
    !isUuid(portfolio_order_id) ||
    !isText(component_order_id) ||
    !isText(market_order_id) ||
    !isText(execution_id) ||
    !isText(fill_id) ||
    !isSymbol(symbol) ||
    !isOrderType(order_type) ||
    !isNonNegative(filled_amount) ||
    !isNonNegative(filled_shares) ||
    !isPrice(filled_price) ||
    !isNumber(delta_shares_position) ||
    !isNumber(delta_cash_position) ||
    !isEpoch(timestamp) ||
    (order_timestamp !== undefined && !isEpoch(order_timestamp))
  );
}

function fill(v: unknown): Fill | undefined {
  if (!isFillAsIs(v)) return undefined;
  const { taxpayer_id, portfolio_order_id, component_order_id, market_order_id, execution_id, fill_id, symbol, order_type } = v;
  const { filled_amount, filled_shares, filled_price, delta_shares_position, delta_cash_position, timestamp, order_timestamp } = v;
  const out: Fill = {
    taxpayer_id,
    portfolio_order_id,
    component_order_id,
    market_order_id,
    execution_id,
    fill_id,
    symbol,
    order_type,
    filled_amount,
    filled_shares,
    filled_price,
    delta_shares_position,
    delta_cash_position,
    timestamp,
  };
  if (order_timestamp !== undefined) out.order_timestamp = order_timestamp;
  return out;
}

/** Shares per symbol: a copy with the same keys in the same order (a `__proto__` key is left to the schema). */
function sharesOf(v: unknown): Record<string, number> | undefined {
  if (!isObject(v)) return undefined;
  const out: Record<string, number> = {};
  for (const symbol in v) {
    if (!Object.hasOwn(v, symbol)) continue;
    const shares = v[symbol];
    if (!isNumber(shares) || symbol === '__proto__') return undefined;
    out[symbol] = shares;
  }
  return out;
}

/**
 * Whether a parsed position snapshot is one the schema accepts exactly as it is (the fast path
 * would answer it), checked in place: nothing is copied. For a reader that keeps the snapshot's
 * bytes and needs only its account and fill count now (portfolio's store).
 */
export function isPositionAsIs(v: unknown): v is Pick<Position, 'taxpayer_id' | 'fills'> {
  if (!isObject(v)) return false;
  const { taxpayer_id, cash, fills, timestamp, shares } = v;
  if (!isTaxpayer(taxpayer_id) || !isNumber(cash) || !Number.isSafeInteger(fills) || (fills as number) < 0 || !isEpoch(timestamp) || !isObject(shares)) return false;
  for (const symbol in shares) {
    if (!Object.hasOwn(shares, symbol)) continue;
    if (!isNumber(shares[symbol]) || symbol === '__proto__') return false;
  }
  return true;
}

function position(v: unknown): Position | undefined {
  if (!isObject(v)) return undefined;
  const { taxpayer_id, cash, fills, timestamp } = v;
  if (!isTaxpayer(taxpayer_id) || !isNumber(cash) || !Number.isSafeInteger(fills) || (fills as number) < 0 || !isEpoch(timestamp)) return undefined;
  const shares = sharesOf(v['shares']);
  if (shares === undefined) return undefined;
  return { taxpayer_id, shares, cash, fills: fills as number, timestamp };
}

registerFastPath(PriceTick, priceTick);
registerFastPath(Position, position);
registerFastPath(ComponentOrder, componentOrder);
registerFastPath(PortfolioOrder, portfolioOrder);
registerFastPath(Execution, execution);
registerFastPath(Fill, fill);
