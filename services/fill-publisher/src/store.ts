/**
 * fill-publisher's positions on disk, so that ten million accounts do not live in the heap and a
 * restart does not read the `positions` changelog again.
 *
 * An LMDB environment (memory-mapped: the OS keeps in memory what is read, the file holds the rest)
 * with one database per task (fills partition): each account's latest snapshot, as the exact bytes
 * the compacted `positions` topic holds for it, and the group's committed input offsets the task's
 * data is as of. A task's changes and those offsets are written in one LMDB transaction after the
 * Kafka transaction that carried them committed, so the store is always as of some committed
 * offsets. On assignment the runner opens a task from the store only when those are exactly the
 * group's committed offsets; otherwise (a crash between the two commits, the partition was owned
 * elsewhere meanwhile, an OS crash lost the last writes) the task is cleared and restored from its
 * changelog partition, a fetch at a time.
 *
 * Commits are visible at once and flushed in the background (LMDB's overlapping sync keeps the file
 * consistent as of an earlier flushed commit if the machine crashes; the offsets then differ and
 * the task is restored).
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { claimDirectory, type ClaimedDirectory } from '@tradeflow/shared';
import { open, TransactionFlags, type Database, type RootDatabase } from 'lmdb';

/** The next offset per input topic, as the runner gives them. */
export type Offsets = ReadonlyMap<string, bigint>;

export class PositionStore {
  readonly path: string;
  private readonly root: RootDatabase;
  private readonly checkpoints: Database<Record<string, string>, number>;
  private readonly tasks = new Map<number, TaskStore>();
  private readonly claim: ClaimedDirectory;

  private constructor(claim: ClaimedDirectory, root: RootDatabase) {
    this.path = claim.path;
    this.root = root;
    this.claim = claim;
    this.checkpoints = root.openDB<Record<string, string>, number>({ name: 'checkpoints' });
  }

  /**
   * Opens the store of this process under `dir`: `<group>-<host>`, or the next free `-2`, `-3`…
   * when another live process on this host holds that one (two instances started side by side).
   */
  static open(dir: string, group: string, maxBytes = 64 * 1024 ** 3): PositionStore {
    const claim = claimDirectory(dir, `${group}-${hostname()}`);
    try {
      const root = open({ path: join(claim.path, 'lmdb'), maxDbs: 1_024, mapSize: maxBytes, compression: false });
      return new PositionStore(claim, root);
    } catch (error) {
      claim.release();
      throw error;
    }
  }

  /** The store of one task (fills partition). */
  task(partition: number): TaskStore {
    let task = this.tasks.get(partition);
    if (task === undefined) {
      task = new TaskStore(this.root, this.root.openDB<Buffer, number>({ name: `positions-${partition}`, encoding: 'binary' }), this.checkpoints, partition);
      this.tasks.set(partition, task);
    }
    return task;
  }

  async close(): Promise<void> {
    await this.root.close();
    this.claim.release();
  }
}

/** A commit that is visible when it returns and flushed to disk after (see the file comment). */
const VISIBLE_NOT_FLUSHED = TransactionFlags.ABORTABLE | TransactionFlags.SYNCHRONOUS_COMMIT | TransactionFlags.NO_SYNC_FLUSH;

export class TaskStore {
  readonly partition: number;
  private readonly root: RootDatabase;
  private readonly positions: Database<Buffer, number>;
  private readonly checkpoints: Database<Record<string, string>, number>;

  constructor(root: RootDatabase, positions: Database<Buffer, number>, checkpoints: Database<Record<string, string>, number>, partition: number) {
    this.root = root;
    this.positions = positions;
    this.checkpoints = checkpoints;
    this.partition = partition;
  }

  /** An account's latest snapshot (the bytes of its `positions` record). */
  get(taxpayerId: number): Buffer | undefined {
    return this.positions.get(taxpayerId);
  }

  /** The committed offsets the task's data is as of; undefined while it is being restored or was never written. */
  offsets(): Offsets | undefined {
    const stored = this.checkpoints.get(this.partition);
    return stored === undefined ? undefined : new Map(Object.entries(stored).map(([topic, next]) => [topic, BigInt(next)]));
  }

  /** Whether the task's data is as of exactly these offsets. */
  isAsOf(committed: Offsets): boolean {
    const stored = this.offsets();
    if (stored === undefined || stored.size !== committed.size) return false;
    for (const [topic, next] of committed) if (stored.get(topic) !== next) return false;
    return true;
  }

  /** Drops the task's accounts and offsets (before it is restored from the changelog). */
  clear(): void {
    this.root.transactionSync(() => {
      this.checkpoints.removeSync(this.partition);
      this.positions.clearSync();
    }, VISIBLE_NOT_FLUSHED);
  }

  /** Writes snapshots (null deletes the account) and, when given, the offsets they are as of, in one transaction. */
  write(snapshots: Iterable<readonly [number, Buffer | null]>, offsets?: Offsets): void {
    this.root.transactionSync(() => {
      for (const [taxpayerId, snapshot] of snapshots) {
        if (snapshot === null) this.positions.removeSync(taxpayerId);
        else this.positions.putSync(taxpayerId, snapshot);
      }
      if (offsets !== undefined) this.checkpoints.putSync(this.partition, Object.fromEntries([...offsets].map(([topic, next]) => [topic, next.toString()])));
    }, VISIBLE_NOT_FLUSHED);
  }

  /** Accounts held (LMDB's count). */
  accounts(): number {
    return (this.positions.getStats() as { entryCount: number }).entryCount;
  }
}
