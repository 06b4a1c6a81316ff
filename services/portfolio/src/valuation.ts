/**
 * An account at a glance: each holding valued at its symbol's latest mid price, and the total with
 * cash, in exact micro-units (a value is rounded once, to the micro-dollar). Pure.
 */
import { fromMicros, MICRO, roundDiv, toMicros, type Position, type PriceTick } from '@tradeflow/shared';

export interface Holding {
  readonly symbol: string;
  readonly shares: number;
  /** (bid + ask) / 2 of the latest price; null when the symbol has no price yet. */
  readonly price: number | null;
  readonly price_time: number | null;
  /** shares × price, to the micro-dollar; null without a price. */
  readonly value: number | null;
}

export interface Valuation {
  readonly taxpayer_id: number;
  readonly cash: number;
  readonly holdings: readonly Holding[];
  /** Σ of the holdings' values (those with a price). */
  readonly holdings_value: number;
  /** cash + holdings_value. */
  readonly total: number;
  /** Symbols held without a price: the total leaves them out. */
  readonly unpriced: readonly string[];
  readonly fills: number;
  /** Epoch seconds of the newest fill in the position. */
  readonly last_fill_time: number;
}

/** Values a position at the latest prices. Holdings of zero shares are left out. */
export function valuePosition(position: Position, priceOf: (symbol: string) => PriceTick | undefined): Valuation {
  const holdings: Holding[] = [];
  const unpriced: string[] = [];
  let holdingsValue = 0n;
  for (const symbol of Object.keys(position.shares).sort()) {
    const shares = toMicros(position.shares[symbol]!);
    if (shares === 0n) continue;
    const tick = priceOf(symbol);
    if (tick === undefined) {
      unpriced.push(symbol);
      holdings.push({ symbol, shares: fromMicros(shares), price: null, price_time: null, value: null });
      continue;
    }
    const twiceMid = toMicros(tick.bid) + toMicros(tick.ask);
    const value = roundDiv(shares * twiceMid, 2n * MICRO);
    holdingsValue += value;
    holdings.push({ symbol, shares: fromMicros(shares), price: Number(twiceMid) / 2e6, price_time: tick.timestamp, value: fromMicros(value) });
  }
  const cash = toMicros(position.cash);
  return {
    taxpayer_id: position.taxpayer_id,
    cash: fromMicros(cash),
    holdings,
    holdings_value: fromMicros(holdingsValue),
    total: fromMicros(cash + holdingsValue),
    unpriced,
    fills: position.fills,
    last_fill_time: position.timestamp,
  };
}
