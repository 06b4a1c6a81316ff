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

/**
 * An account as the text of its snapshot, exactly what `snapshotText` wrote for it: a fill changes
 * the symbol's amount (or adds the symbol), the cash, the fill count and the timestamp in the text
 * (`patchSnapshot`), where decoding the account and encoding it again would touch every symbol it
 * holds (most of what a fill cost the positions stage).
 */
export interface SnapshotText {
  readonly taxpayerId: number;
  text: string;
}

/** An account as the book holds it: decoded, or as its snapshot's text. */
export type Held = Account | SnapshotText;

const isText = (held: Held): held is SnapshotText => 'text' in held;

export class PositionBook {
  /** The accounts in memory: all of them, or with `load`, those changed since the store last took them. */
  readonly accounts = new Map<number, Held>();
  private readonly load: ((taxpayerId: number) => Held | undefined) | undefined;

  /** `load` reads an account that is not in memory from a store. */
  constructor(load?: (taxpayerId: number) => Held | undefined) {
    this.load = load;
  }

  apply(fill: Fill): void {
    let held = this.accounts.get(fill.taxpayer_id);
    if (held === undefined) {
      held = this.load?.(fill.taxpayer_id) ?? { taxpayerId: fill.taxpayer_id, shares: new Map(), cash: 0n, fills: 0, timestamp: fill.timestamp };
      this.accounts.set(fill.taxpayer_id, held);
    }
    if (isText(held)) {
      const patched = patchSnapshot(held.text, fill);
      if (patched !== undefined) {
        held.text = patched;
        return;
      }
      // A key written with an escape, or one an object may order apart: the long way.
      held = PositionBook.accountOf(held.text)!;
      this.accounts.set(fill.taxpayer_id, held);
    }
    PositionBook.add(held, fill);
  }

  /**
   * The text of an account's snapshot (`snapshotText`); from then on the book holds the account as
   * that text, which the next fills patch.
   */
  snapshotOf(taxpayerId: number): string {
    const held = this.accounts.get(taxpayerId)!;
    if (isText(held)) return held.text;
    const text = PositionBook.snapshotText(held);
    this.accounts.set(taxpayerId, { taxpayerId, text });
    return text;
  }

  /** The account decoded, however the book holds it. */
  account(taxpayerId: number): Account | undefined {
    const held = this.accounts.get(taxpayerId);
    return held === undefined || !isText(held) ? held : PositionBook.accountOf(held.text);
  }

  private static add(account: Account, fill: Fill): void {
    const held = account.shares.get(fill.symbol);
    if (held === undefined) account.sortedSymbols = undefined;
    account.shares.set(fill.symbol, (held ?? 0n) + toMicros(fill.delta_shares_position));
    account.cash += toMicros(fill.delta_cash_position);
    account.fills++;
    account.timestamp = Math.max(account.timestamp, fill.timestamp);
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
   * The text of an account's snapshot, exactly `JSON.stringify(PositionBook.snapshot(account))`,
   * written without building the snapshot object first (the positions stage writes one per account
   * its transaction changed).
   */
  static snapshotText(account: Account): string {
    account.sortedSymbols ??= [...account.shares.keys()].sort();
    let shares = '';
    for (const symbol of account.sortedSymbols) {
      const key = quotedKey(symbol);
      // An object lists array-index keys first and drops `__proto__`: JSON.stringify of the snapshot decides.
      if (key === undefined) return JSON.stringify(PositionBook.snapshot(account));
      shares += `${shares === '' ? '' : ','}${key}:${fromMicros(account.shares.get(symbol)!)}`;
    }
    return `{"taxpayer_id":${account.taxpayerId},"shares":{${shares}},"cash":${fromMicros(account.cash)},"fills":${account.fills},"timestamp":${account.timestamp}}`;
  }

  /**
   * An account from a snapshot's text or bytes in one pass, the same as `fromSnapshot` of what
   * decodeMessage(Position) gives when its quick check accepts the snapshot as it is; undefined for
   * anything else (the caller then decodes it that way, with the reason). Reading an account back
   * from the store is most of what a fill costs the positions stage.
   */
  static accountOf(snapshot: string | Buffer): Account | undefined {
    let json: unknown;
    try {
      json = JSON.parse(typeof snapshot === 'string' ? snapshot : snapshot.toString('utf8'));
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

/** A number's JSON text after adding `delta` to it in micro-units, as toMicros and fromMicros would. */
function plus(text: string, delta: number): string {
  const a = Math.round(Number(text) * 1e6);
  const b = Math.round(delta * 1e6);
  const sum = a + b;
  // Exact in doubles while every part is a safe integer; bigint otherwise (what toMicros gives).
  return String(Number.isSafeInteger(a) && Number.isSafeInteger(b) && Number.isSafeInteger(sum) ? sum / 1e6 : fromMicros(BigInt(a) + BigInt(b)));
}

/** -1, 0 or 1 as text[start, end) sorts before, as or after `symbol` (UTF-16 code units, as sort() orders them). */
function compareAt(text: string, start: number, end: number, symbol: string): number {
  const length = Math.min(end - start, symbol.length);
  for (let i = 0; i < length; i++) {
    const a = text.charCodeAt(start + i);
    const b = symbol.charCodeAt(i);
    if (a !== b) return a < b ? -1 : 1;
  }
  return Math.sign(end - start - symbol.length);
}

/**
 * A snapshot's text after `fill`, the same text `snapshotText` would write for the account decoded
 * from `text` with the fill applied, when `text` is snapshotText's own (the caller's promise);
 * undefined where it would take more than this knows (a key written with an escape, or one that
 * may be an array index, which an object lists first): then the long way. Four numbers change —
 * the symbol's shares (a new symbol goes in among the others in sort order), the cash, the fill
 * count and the timestamp; the other symbols' text stays as written.
 *
 * The form is `{"taxpayer_id":N,"shares":{"K":V,…},"cash":C,"fills":F,"timestamp":T}`. With no
 * backslash in the text every key is its symbol between two quotes; the top-level `,"cash":` is the
 * last one (a symbol may be called `cash`, but only numbers follow the top-level one).
 */
export function patchSnapshot(text: string, fill: Fill): string | undefined {
  const symbol = fill.symbol;
  const key = quotedKey(symbol);
  if (key === undefined || key.length !== symbol.length + 2 || text.includes('\\')) return undefined;
  const sharesEnd = text.lastIndexOf(',"cash":') - 1;
  let at = text.indexOf('"shares":{') + 10;
  let insertAt = sharesEnd;
  let valueStart = -1;
  let valueEnd = -1;
  while (at < sharesEnd) {
    const keyStart = at + 1;
    const keyEnd = text.indexOf('"', keyStart);
    const first = text.charCodeAt(keyStart);
    if (first >= 48 && first <= 57) return undefined; // a digit: maybe an array index, out of sort order
    let end = keyEnd + 2;
    while (text[end] !== ',' && text[end] !== '}') end++;
    const order = compareAt(text, keyStart, keyEnd, symbol);
    if (order === 0) {
      valueStart = keyEnd + 2;
      valueEnd = end;
      break;
    }
    if (order > 0) {
      insertAt = at;
      break;
    }
    at = end + 1;
  }
  const fillsAt = text.indexOf(',"fills":', sharesEnd);
  const timestampAt = text.indexOf(',"timestamp":', fillsAt);
  const tail = `${plus(text.slice(sharesEnd + 9, fillsAt), fill.delta_cash_position)},"fills":${Number(text.slice(fillsAt + 9, timestampAt)) + 1},"timestamp":${Math.max(Number(text.slice(timestampAt + 13, -1)), fill.timestamp)}}`;
  if (valueStart !== -1) return `${text.slice(0, valueStart)}${plus(text.slice(valueStart, valueEnd), fill.delta_shares_position)}${text.slice(valueEnd, sharesEnd + 9)}${tail}`;
  const entry = `${key}:${plus('0', fill.delta_shares_position)}`;
  const shares = insertAt < sharesEnd ? `${entry},` : text[sharesEnd - 1] === '{' ? entry : `,${entry}`;
  return `${text.slice(0, insertAt)}${shares}${text.slice(insertAt, sharesEnd + 9)}${tail}`;
}
