/**
 * Position snapshots a fetch brings, fewest decoded: positions is keyed by account and each
 * account's snapshots come in order from one partition, so of an account's snapshots in one fetch
 * only the last one that reads decides what the store keeps. Decoding a snapshot (every symbol of
 * the account) was a tenth of portfolio's busy time under the order flow (CPU profile), and a fetch
 * that catches up after a stall holds several snapshots of the busiest accounts.
 */

/** A record as the view hands it over: its key and value bytes. */
export interface KeyedRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/**
 * Visits the records newest first, each key's until one of them is taken (`take` returns true);
 * records without a key are all visited. Returns how many were visited.
 */
export function newestPerKey<R extends KeyedRecord>(records: readonly R[], take: (record: R) => boolean): number {
  const done = new Set<string>();
  let visited = 0;
  for (let i = records.length - 1; i >= 0; i--) {
    const record = records[i]!;
    const key = record.key === null ? undefined : record.key.toString('latin1');
    if (key !== undefined && done.has(key)) continue;
    visited++;
    if (take(record) && key !== undefined) done.add(key);
  }
  return visited;
}
