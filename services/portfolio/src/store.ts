/**
 * The portfolio service's state on disk: an LMDB environment (memory-mapped, so the accounts live in
 * the file and the OS keeps only what is read in memory) with each account's latest position, its
 * most recent fills, the latest price of every symbol, and the next Kafka offset of every partition
 * it applied. A batch of records and the offsets after it are written in one transaction, so after
 * a crash or a restart the store is as of some offsets, and reading goes on from there.
 *
 * Positions and fills are kept as the bytes their Kafka records carried (validated when they came
 * in, decoded again only when an answer needs them): encoding them anew for the store (msgpack)
 * and decoding the stored one to compare took a third of the service's time under the order flow.
 */
import { open, type Database, type RootDatabase } from 'lmdb';
import { decodeMessage, Fill, Position, type PriceTick } from '@tradeflow/shared';

/** A record's value as decoded (and validated) and the bytes it came as. */
export interface Received<T> {
  readonly value: T;
  readonly bytes: Buffer;
}

/**
 * What the store's values are: raw record bytes, each account's fill count in a database of its own
 * (3); raw bytes with the count among the fills (2); the earliest format (none recorded) held msgpack.
 */
const FORMAT = '3';

/** A stored position: its fill count (a float64, to compare without decoding) and then its record's bytes. */
const COUNT_BYTES = 8;

export interface PartitionOffset {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to read. */
  readonly next: bigint;
}

/** What one transaction writes. */
export interface StoreBatch {
  /** Only the account and fill count are read now; the bytes are decoded when an answer needs them. */
  readonly positions?: readonly Received<Pick<Position, 'taxpayer_id' | 'fills'>>[];
  /** Only the account is read now; the bytes are decoded when an answer needs them. */
  readonly fills?: readonly Received<Pick<Fill, 'taxpayer_id'>>[];
  readonly prices?: readonly PriceTick[];
  readonly offsets: readonly PartitionOffset[];
}

export interface StoreOptions {
  readonly path: string;
  /** Recent fills kept per account. */
  readonly recentFills: number;
  /** The largest the file may grow to (LMDB maps it whole; the disk holds what is written). */
  readonly maxBytes?: number;
}

const offsetKey = (topic: string, partition: number) => `${topic}:${partition}`;

/** Symbols whose latest price is kept in memory too (see PortfolioStore.latestPrices). */
const MAX_CACHED_PRICES = 10_000;

export class PortfolioStore {
  private readonly root: RootDatabase;
  /** Account → its fill count (float64) and its latest snapshot's bytes. */
  private readonly positions: Database<Buffer, number>;
  /** An account's recent fills in a ring of slots: [account, slot] → a fill's bytes. */
  private readonly fills: Database<Buffer, [number, number]>;
  /**
   * Account → its fills so far (float64), which says the ring's next slot. Apart from the fills, a
   * burst of fills of many accounts changes a few pages of counts and one page of fills per
   * account, not two: 2,000 fills of 2,000 accounts applied in 10 ms instead of 16 (docs/performance.md).
   */
  private readonly counts: Database<Buffer, number>;
  private readonly prices: Database<PriceTick, string>;
  private readonly offsets: Database<string, string>;
  /** What the store is of: `cluster` → the Kafka cluster id. */
  private readonly meta: Database<string, string>;
  private readonly recentFills: number;
  /**
   * The latest tick of each symbol read or written, as in the store (written once the transaction
   * committed): every answer values each holding at its price, and reading one from LMDB decodes
   * it anew. Bounded: beyond MAX_CACHED_PRICES symbols the rest are read from the store.
   */
  private readonly latestPrices = new Map<string, PriceTick>();

  private constructor(root: RootDatabase, recentFills: number) {
    this.root = root;
    this.positions = root.openDB<Buffer, number>({ name: 'positions', encoding: 'binary' });
    this.fills = root.openDB<Buffer, [number, number]>({ name: 'recent-fills', encoding: 'binary' });
    this.counts = root.openDB<Buffer, number>({ name: 'fill-counts', encoding: 'binary' });
    this.prices = root.openDB<PriceTick, string>({ name: 'prices' });
    this.offsets = root.openDB<string, string>({ name: 'offsets' });
    this.meta = root.openDB<string, string>({ name: 'meta' });
    this.recentFills = recentFills;
  }

  /**
   * Commits are not flushed to disk one by one (noSync): a commit is in the file (the page cache)
   * when apply resolves, so it survives the process crashing; an OS crash may lose the last ones or
   * the file (delete the store's directory then: it is rebuilt from the topics). (LMDB's write map,
   * which writes a transaction's pages straight into the map, applied a burst of 2,000 fills in
   * 5 ms instead of 10, but every page written stays in the process's RSS: a 10 million accounts
   * rebuild peaked at 3.4 GB against 1.5 GB. Not used.)
   */
  static open(options: StoreOptions): PortfolioStore {
    const root = open({ path: options.path, maxDbs: 8, mapSize: options.maxBytes ?? 64 * 1024 ** 3, compression: false, noSync: true });
    return new PortfolioStore(root, options.recentFills);
  }

  /** Writes a batch and the offsets after it, all or nothing. Fills are kept newest first. */
  async apply(batch: StoreBatch): Promise<void> {
    // In this thread, committed when it returns (noSync: no flush to wait for): lmdb-js's
    // asynchronous transactions hand every write to its writer thread as an instruction, which
    // cost more here than the writes themselves.
    const written: PriceTick[] = [];
    this.root.transactionSync(() => {
      for (const { value: position, bytes } of batch.positions ?? []) {
        const current = this.positions.getBinaryFast(position.taxpayer_id);
        // Snapshots of one account come in order from one partition; a replay brings older ones.
        if (current === undefined || position.fills >= current.readDoubleBE(0)) {
          const stored = Buffer.allocUnsafe(COUNT_BYTES + bytes.length);
          stored.writeDoubleBE(position.fills, 0);
          bytes.copy(stored, COUNT_BYTES);
          this.positions.putSync(position.taxpayer_id, stored);
        }
      }
      // A fill goes into the next slot of its account's ring (the oldest one's), so writing one
      // costs the same however many an account has. (Fills are not applied twice: reading goes on
      // from the offset after the last batch applied.)
      const counts = new Map<number, number>();
      for (const { value: fill, bytes } of batch.fills ?? []) {
        const count = counts.get(fill.taxpayer_id) ?? this.countOf(fill.taxpayer_id);
        this.fills.putSync([fill.taxpayer_id, count % this.recentFills], bytes);
        counts.set(fill.taxpayer_id, count + 1);
      }
      // Each account's count once per batch, not once per fill.
      for (const [account, count] of counts) {
        const stored = Buffer.allocUnsafe(8);
        stored.writeDoubleBE(count, 0);
        this.counts.putSync(account, stored);
      }
      // Each symbol's latest tick of the batch, read and written once (of one time, the later one).
      const latest = new Map<string, PriceTick>();
      for (const tick of batch.prices ?? []) {
        const seen = latest.get(tick.symbol);
        if (seen === undefined || tick.timestamp >= seen.timestamp) latest.set(tick.symbol, tick);
      }
      for (const tick of latest.values()) {
        // The latest committed price, from memory when it is there (this store is its only writer).
        const current = this.price(tick.symbol);
        if (current === undefined || tick.timestamp >= current.timestamp) {
          this.prices.putSync(tick.symbol, tick);
          written.push(tick);
        }
      }
      for (const { topic, partition, next } of batch.offsets) this.offsets.putSync(offsetKey(topic, partition), next.toString());
    });
    for (const tick of written) this.cachePrice(tick);
  }

  private cachePrice(tick: PriceTick): void {
    if (this.latestPrices.has(tick.symbol) || this.latestPrices.size < MAX_CACHED_PRICES) this.latestPrices.set(tick.symbol, tick);
  }

  /** How many fills of an account were applied. */
  private countOf(taxpayerId: number): number {
    return this.counts.getBinaryFast(taxpayerId)?.readDoubleBE(0) ?? 0;
  }

  position(taxpayerId: number): Position | undefined {
    const stored = this.positions.getBinaryFast(taxpayerId);
    if (stored === undefined) return undefined;
    // getBinaryFast's buffer is a shared one whose `length` alone says where the value ends.
    return storedValue(Position, stored.subarray(COUNT_BYTES, stored.length), `the position of account ${taxpayerId}`);
  }

  /** The most recent fills of an account, newest first (of one time, the later written first). */
  recent(taxpayerId: number, limit: number): Fill[] {
    const count = this.countOf(taxpayerId);
    const out: Fill[] = [];
    for (let i = count - 1; i >= 0 && i >= count - this.recentFills; i--) {
      const stored = this.fills.getBinaryFast([taxpayerId, i % this.recentFills])!;
      out.push(storedValue(Fill, stored.subarray(0, stored.length), `a fill of account ${taxpayerId}`));
    }
    return out.sort((a, b) => b.timestamp - a.timestamp).slice(0, limit);
  }

  price(symbol: string): PriceTick | undefined {
    const cached = this.latestPrices.get(symbol);
    if (cached !== undefined) return cached;
    const stored = this.prices.get(symbol);
    if (stored !== undefined) this.cachePrice(stored);
    return stored;
  }

  /** The next offset to read of a partition, if this store applied any of it. */
  offset(topic: string, partition: number): bigint | undefined {
    const value = this.offsets.get(offsetKey(topic, partition));
    return value === undefined ? undefined : BigInt(value);
  }

  /** Every partition's next offset, as [topic, partition, next]. */
  allOffsets(): [string, number, bigint][] {
    const out: [string, number, bigint][] = [];
    for (const { key, value } of this.offsets.getRange()) {
      const at = key.lastIndexOf(':');
      out.push([key.slice(0, at), Number(key.slice(at + 1)), BigInt(value)]);
    }
    return out;
  }

  /** The Kafka cluster the store was kept for, if it was recorded. */
  cluster(): string | undefined {
    return this.meta.get('cluster');
  }

  /** Whether the store holds its values in this code's format (a store of the earlier format must be rebuilt). */
  isCurrentFormat(): boolean {
    return this.meta.get('format') === FORMAT || (this.offsets.getKeysCount() === 0 && this.accounts() === 0);
  }

  /** Records the cluster the store is of; with `clear`, drops everything first (it is rebuilt from the topics). */
  async keepFor(clusterId: string, clear: boolean): Promise<void> {
    await this.root.transaction(() => {
      if (clear) for (const db of [this.positions, this.fills, this.counts, this.prices, this.offsets]) db.clearSync();
      if (clear) this.latestPrices.clear();
      this.meta.put('cluster', clusterId);
      this.meta.put('format', FORMAT);
    });
  }

  /** Accounts held (an estimate from LMDB's statistics, exact when nothing is being written). */
  accounts(): number {
    return (this.positions.getStats() as { entryCount: number }).entryCount;
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

/** A stored record's value, decoded as it was when it came in; a store that holds something else is a fault. */
function storedValue<T>(schema: typeof Position | typeof Fill, bytes: Buffer, what: string): T {
  const decoded = decodeMessage(schema, bytes);
  if (!decoded.ok) throw new Error(`the store holds an unreadable record (${what}: ${decoded.reason}); remove the store's directory to rebuild it from the topics`);
  return decoded.value as T;
}
