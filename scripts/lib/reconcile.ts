/**
 * The batch path that checks the real-time one (the original platform's daily job over its source
 * of truth): every account's position recomputed exactly from the `fills` topic, compared with the
 * latest `positions` snapshots and with the fills InfluxDB stored. Pure: the reading is in
 * scripts/reconcile.ts.
 */
import { toMicros, type Fill, type Position } from '@tradeflow/shared';

/**
 * An exact sum of micro-units: a number while it is a safe integer (fast), a bigint beyond (exact
 * still). Micro-units of a value are Math.round(value × 10^6), as toMicros takes them.
 */
export type Exact = number | bigint;

export function addMicros(sum: Exact, value: number): Exact {
  const micros = Math.round(value * 1e6);
  if (typeof sum === 'bigint') return sum + BigInt(micros);
  const next = sum + micros;
  return Number.isSafeInteger(next) ? next : BigInt(sum) + BigInt(micros);
}

/** Two exact sums added, exact still. */
export function addExact(a: Exact, b: Exact): Exact {
  if (typeof a === 'number' && typeof b === 'number' && Number.isSafeInteger(a + b)) return a + b;
  return BigInt(a) + BigInt(b);
}

const asNumber = (x: Exact): number => Number(x) / 1e6;

export interface Recomputed {
  readonly shares: Map<string, Exact>;
  cash: Exact;
  fills: number;
}

/** The fields of a fill that reconciliation sums and compares. */
export type ReconciledFill = Pick<Fill, 'taxpayer_id' | 'fill_id' | 'symbol' | 'filled_amount' | 'delta_shares_position' | 'delta_cash_position' | 'timestamp'>;

/**
 * A fill record's bytes → the fields reconciliation needs, each checked for its type, or the reason
 * why not. Lighter than the Fill schema (whose producer validated the rest): the batch path reads
 * a whole history.
 */
export function readFill(bytes: Buffer | null): { ok: true; value: ReconciledFill } | { ok: false; reason: string } {
  if (bytes === null || bytes.length === 0) return { ok: false, reason: 'empty message' };
  return readFillText(bytes.toString('utf8'));
}

/** readFill of a record's value as text. */
export function readFillText(text: string): { ok: true; value: ReconciledFill } | { ok: false; reason: string } {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
  if (typeof json !== 'object' || json === null) return { ok: false, reason: 'not a JSON object' };
  const { taxpayer_id, fill_id, symbol, filled_amount, delta_shares_position, delta_cash_position, timestamp } = json;
  if (!Number.isSafeInteger(taxpayer_id) || (taxpayer_id as number) <= 0) return { ok: false, reason: 'taxpayer_id: must be a positive integer' };
  if (typeof fill_id !== 'string' || fill_id === '') return { ok: false, reason: 'fill_id: must be a string' };
  if (typeof symbol !== 'string' || symbol === '') return { ok: false, reason: 'symbol: must be a string' };
  for (const [name, value] of [['filled_amount', filled_amount], ['delta_shares_position', delta_shares_position], ['delta_cash_position', delta_cash_position], ['timestamp', timestamp]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value)) return { ok: false, reason: `${name}: must be a number` };
  }
  return { ok: true, value: json as unknown as ReconciledFill };
}

export type Difference =
  | { readonly kind: 'position differs'; readonly taxpayer_id: number; readonly field: string; readonly from_fills: number; readonly snapshot: number }
  | { readonly kind: 'no snapshot'; readonly taxpayer_id: number; readonly fills: number }
  | { readonly kind: 'snapshot without fills'; readonly taxpayer_id: number; readonly snapshot_fills: number }
  | { readonly kind: 'missing in InfluxDB'; readonly taxpayer_id: number; readonly fill_id: string; readonly amount: number }
  | { readonly kind: 'only in InfluxDB'; readonly taxpayer_id: number; readonly fill_id: string; readonly amount: number };

/** Positions summed from fills in micro-units, as fill-publisher sums them. */
export class Recomputation {
  readonly accounts = new Map<number, Recomputed>();
  fills = 0;

  add(fill: ReconciledFill): void {
    let account = this.accounts.get(fill.taxpayer_id);
    if (account === undefined) this.accounts.set(fill.taxpayer_id, (account = { shares: new Map(), cash: 0, fills: 0 }));
    account.shares.set(fill.symbol, addMicros(account.shares.get(fill.symbol) ?? 0, fill.delta_shares_position));
    account.cash = addMicros(account.cash, fill.delta_cash_position);
    account.fills++;
    this.fills++;
  }
}

/** Every difference between the recomputed positions and the latest snapshots, by account. */
export function comparePositions(recomputed: ReadonlyMap<number, Recomputed>, snapshots: ReadonlyMap<number, Position>): Difference[] {
  const differences: Difference[] = [];
  for (const [taxpayer, account] of [...recomputed].sort((a, b) => a[0] - b[0])) {
    const snapshot = snapshots.get(taxpayer);
    if (snapshot === undefined) {
      differences.push({ kind: 'no snapshot', taxpayer_id: taxpayer, fills: account.fills });
      continue;
    }
    /** Micro-units compared exactly (as bigints). */
    const differ = (field: string, fromFills: Exact, inSnapshot: number) => {
      if (BigInt(fromFills) !== toMicros(inSnapshot)) differences.push({ kind: 'position differs', taxpayer_id: taxpayer, field, from_fills: asNumber(fromFills), snapshot: inSnapshot });
    };
    if (account.fills !== snapshot.fills) differences.push({ kind: 'position differs', taxpayer_id: taxpayer, field: 'fills', from_fills: account.fills, snapshot: snapshot.fills });
    differ('cash', account.cash, snapshot.cash);
    const symbols = new Set([...account.shares.keys(), ...Object.keys(snapshot.shares)]);
    for (const symbol of [...symbols].sort()) differ(`shares ${symbol}`, account.shares.get(symbol) ?? 0, snapshot.shares[symbol] ?? 0);
  }
  for (const [taxpayer, snapshot] of [...snapshots].sort((a, b) => a[0] - b[0])) {
    if (!recomputed.has(taxpayer) && snapshot.fills > 0) differences.push({ kind: 'snapshot without fills', taxpayer_id: taxpayer, snapshot_fills: snapshot.fills });
  }
  return differences;
}

export interface StoredFill {
  readonly fill_id: string;
  readonly taxpayer_id: number;
  readonly amount: number;
}

/**
 * Fills of Kafka against those InfluxDB holds: what one has and the other lacks. InfluxDB's side
 * is consumed: what is left of `stored` afterwards is only in InfluxDB.
 */
export class InfluxComparison {
  private readonly stored: Map<string, StoredFill>;
  readonly missing: Difference[] = [];

  constructor(stored: Iterable<StoredFill>) {
    this.stored = new Map([...stored].map((f) => [f.fill_id, f]));
  }

  check(fill: ReconciledFill): void {
    if (!this.stored.delete(fill.fill_id)) this.missing.push({ kind: 'missing in InfluxDB', taxpayer_id: fill.taxpayer_id, fill_id: fill.fill_id, amount: fill.filled_amount });
  }

  /** InfluxDB's fills that no fill checked so far matched. */
  leftover(): StoredFill[] {
    return [...this.stored.values()];
  }

  differences(): Difference[] {
    return differencesWithInflux(this.missing, this.leftover());
  }
}

/** Fills missing in InfluxDB, then InfluxDB's fills that are not in the fills topic. */
export function differencesWithInflux(missing: readonly Difference[], leftover: readonly StoredFill[]): Difference[] {
  return [...missing, ...leftover.map((f): Difference => ({ kind: 'only in InfluxDB', taxpayer_id: f.taxpayer_id, fill_id: f.fill_id, amount: f.amount }))];
}

export function describeDifference(d: Difference): string {
  switch (d.kind) {
    case 'position differs':
      return `account ${d.taxpayer_id}: ${d.field} is ${d.snapshot} in its positions snapshot, ${d.from_fills} from its fills`;
    case 'no snapshot':
      return `account ${d.taxpayer_id}: ${d.fills} fills but no positions snapshot`;
    case 'snapshot without fills':
      return `account ${d.taxpayer_id}: a positions snapshot of ${d.snapshot_fills} fills, but no fill`;
    case 'missing in InfluxDB':
      return `account ${d.taxpayer_id}: fill ${d.fill_id} (${d.amount}) is not in InfluxDB`;
    case 'only in InfluxDB':
      return `account ${d.taxpayer_id}: fill ${d.fill_id} (${d.amount}) is in InfluxDB but not in the fills topic`;
  }
}
