/**
 * Account positions as the exact sum of their fills: shares per symbol and cash in integer
 * micro-units (bigint), so 100,000 fills sum to the last digit. Snapshots are what the compacted
 * `positions` topic holds, and also what a restarted fill-publisher rebuilds its state from.
 */
import { fromMicros, MAX_EPOCH_SECONDS, MIN_EPOCH_SECONDS, Position, toMicros, type Fill } from '@tradeflow/shared';

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

  /**
   * The bytes of an account's snapshot, exactly `JSON.stringify(PositionBook.snapshot(account))`,
   * written without building the snapshot object first (the positions stage writes one per account
   * its transaction changed).
   */
  static snapshotBytes(account: Account): Buffer {
    account.sortedSymbols ??= [...account.shares.keys()].sort();
    let shares = '';
    for (const symbol of account.sortedSymbols) {
      const key = quotedKey(symbol);
      // An object lists array-index keys first and drops `__proto__`: JSON.stringify of the snapshot decides.
      if (key === undefined) return Buffer.from(JSON.stringify(PositionBook.snapshot(account)));
      shares += `${shares === '' ? '' : ','}${key}:${fromMicros(account.shares.get(symbol)!)}`;
    }
    return Buffer.from(`{"taxpayer_id":${account.taxpayerId},"shares":{${shares}},"cash":${fromMicros(account.cash)},"fills":${account.fills},"timestamp":${account.timestamp}}`);
  }

  /**
   * An account from a snapshot's bytes in one pass, the same as `fromSnapshot` of what
   * decodeMessage(Position) gives when its quick check accepts the snapshot as it is; undefined for
   * anything else (the caller then decodes it that way, with the reason). Reading an account back
   * from the store is most of what a fill costs the positions stage.
   */
  static accountOf(bytes: Buffer): Account | undefined {
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
    const { taxpayer_id, shares, cash, fills, timestamp } = json as Record<string, unknown>;
    if (!Number.isSafeInteger(taxpayer_id) || (taxpayer_id as number) <= 0) return undefined;
    if (typeof cash !== 'number' || !Number.isFinite(cash)) return undefined;
    if (!Number.isSafeInteger(fills) || (fills as number) < 0) return undefined;
    if (typeof timestamp !== 'number' || !(timestamp >= MIN_EPOCH_SECONDS && timestamp <= MAX_EPOCH_SECONDS)) return undefined;
    if (typeof shares !== 'object' || shares === null || Array.isArray(shares)) return undefined;
    const held = new Map<string, bigint>();
    for (const symbol in shares) {
      if (!Object.hasOwn(shares, symbol)) continue;
      const amount = (shares as Record<string, unknown>)[symbol];
      if (typeof amount !== 'number' || !Number.isFinite(amount) || symbol === '__proto__') return undefined;
      held.set(symbol, toMicros(amount));
    }
    return { taxpayerId: taxpayer_id as number, shares: held, cash: toMicros(cash), fills: fills as number, timestamp };
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

/** Symbols as JSON keys, quoted once each (bounded: snapshots read back may hold any keys). */
const quotedKeys = new Map<string, string | undefined>();
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/** `symbol` as a JSON key, or undefined when an object would not keep it in insertion order (or at all). */
function quotedKey(symbol: string): string | undefined {
  let key = quotedKeys.get(symbol);
  if (key === undefined && !quotedKeys.has(symbol)) {
    key = symbol === '__proto__' || (ARRAY_INDEX.test(symbol) && Number(symbol) < 2 ** 32 - 1) ? undefined : JSON.stringify(symbol);
    if (quotedKeys.size < 10_000) quotedKeys.set(symbol, key);
  }
  return key;
}
