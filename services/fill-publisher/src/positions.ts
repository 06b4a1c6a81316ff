/**
 * Account positions as the exact sum of their fills: shares per symbol and cash in integer
 * micro-units (bigint), so 100,000 fills sum to the last digit. Snapshots are what the compacted
 * `positions` topic holds, and also what a restarted fill-publisher rebuilds its state from.
 */
import { fromMicros, Position, toMicros, type Fill } from '@tradeflow/shared';

export interface Account {
  readonly taxpayerId: number;
  readonly shares: Map<string, bigint>;
  cash: bigint;
  fills: number;
  timestamp: number;
  /** The symbols in snapshot order, kept until a new symbol arrives. */
  sortedSymbols?: string[] | undefined;
}

export class PositionBook {
  /** The accounts in memory: all of them, or with `load`, those changed since the store last took them. */
  readonly accounts = new Map<number, Account>();
  private readonly load: ((taxpayerId: number) => Account | undefined) | undefined;

  /** `load` reads an account that is not in memory from a store. */
  constructor(load?: (taxpayerId: number) => Account | undefined) {
    this.load = load;
  }

  apply(fill: Fill): Account {
    let account = this.accounts.get(fill.taxpayer_id);
    if (account === undefined) {
      account = this.load?.(fill.taxpayer_id) ?? { taxpayerId: fill.taxpayer_id, shares: new Map(), cash: 0n, fills: 0, timestamp: fill.timestamp };
      this.accounts.set(fill.taxpayer_id, account);
    }
    const held = account.shares.get(fill.symbol);
    if (held === undefined) account.sortedSymbols = undefined;
    account.shares.set(fill.symbol, (held ?? 0n) + toMicros(fill.delta_shares_position));
    account.cash += toMicros(fill.delta_cash_position);
    account.fills++;
    account.timestamp = Math.max(account.timestamp, fill.timestamp);
    return account;
  }

  static snapshot(account: Account): Position {
    const shares: Record<string, number> = {};
    account.sortedSymbols ??= [...account.shares.keys()].sort();
    for (const symbol of account.sortedSymbols) shares[symbol] = fromMicros(account.shares.get(symbol)!);
    return { taxpayer_id: account.taxpayerId, shares, cash: fromMicros(account.cash), fills: account.fills, timestamp: account.timestamp };
  }

  restoreSnapshot(position: Position): void {
    this.accounts.set(position.taxpayer_id, PositionBook.fromSnapshot(position));
  }

  static fromSnapshot(position: Position): Account {
    return {
      taxpayerId: position.taxpayer_id,
      shares: new Map(Object.entries(position.shares).map(([symbol, shares]) => [symbol, toMicros(shares)])),
      cash: toMicros(position.cash),
      fills: position.fills,
      timestamp: position.timestamp,
    };
  }
}
