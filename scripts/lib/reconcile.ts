/**
 * The batch path that checks the real-time one (the original platform's daily job over its source
 * of truth): every account's position recomputed exactly from the `fills` topic, compared with the
 * latest `positions` snapshots and with the fills InfluxDB stored. Pure: the reading is in
 * scripts/reconcile.ts.
 */
import { fromMicros, toMicros, type Fill, type Position } from '@tradeflow/shared';

export interface Recomputed {
  readonly shares: Map<string, bigint>;
  cash: bigint;
  fills: number;
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

  add(fill: Fill): void {
    let account = this.accounts.get(fill.taxpayer_id);
    if (account === undefined) this.accounts.set(fill.taxpayer_id, (account = { shares: new Map(), cash: 0n, fills: 0 }));
    account.shares.set(fill.symbol, (account.shares.get(fill.symbol) ?? 0n) + toMicros(fill.delta_shares_position));
    account.cash += toMicros(fill.delta_cash_position);
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
    const differ = (field: string, fromFills: bigint | number, inSnapshot: bigint | number) => {
      if (fromFills !== inSnapshot) {
        const number = (x: bigint | number) => (typeof x === 'bigint' ? fromMicros(x) : x);
        differences.push({ kind: 'position differs', taxpayer_id: taxpayer, field, from_fills: number(fromFills), snapshot: number(inSnapshot) });
      }
    };
    differ('fills', account.fills, snapshot.fills);
    differ('cash', account.cash, toMicros(snapshot.cash));
    const symbols = new Set([...account.shares.keys(), ...Object.keys(snapshot.shares)]);
    for (const symbol of [...symbols].sort()) differ(`shares ${symbol}`, account.shares.get(symbol) ?? 0n, toMicros(snapshot.shares[symbol] ?? 0));
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

  check(fill: Fill): void {
    if (!this.stored.delete(fill.fill_id)) this.missing.push({ kind: 'missing in InfluxDB', taxpayer_id: fill.taxpayer_id, fill_id: fill.fill_id, amount: fill.filled_amount });
  }

  differences(): Difference[] {
    const extra: Difference[] = [...this.stored.values()].map((f) => ({ kind: 'only in InfluxDB', taxpayer_id: f.taxpayer_id, fill_id: f.fill_id, amount: f.amount }));
    return [...this.missing, ...extra];
  }
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
