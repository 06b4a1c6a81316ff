/**
 * fill-publisher's positions on disk, so that ten million accounts do not live in the heap and a
 * restart does not read the `positions` changelog again.
 *
 * An LMDB environment (memory-mapped: the OS keeps in memory what is read, the file holds the rest)
 * with one database per task (fills partition): each account's latest snapshot, as the exact bytes
 * the compacted `positions` topic holds for it (after a 0x01 byte when the positions stage wrote it
 * itself, see OWN_SNAPSHOT in handler.ts), and the group's committed input offsets the task's
 * data is as of. A task's changes and those offsets are written in one LMDB transaction after the
 * Kafka transaction that carried them committed, so the store is always as of some committed
 * offsets. On assignment the runner opens a task from the store only when those are exactly the
 * group's committed offsets; otherwise (a crash between the two commits, the partition was owned
 * elsewhere meanwhile, an OS crash lost the last writes) the task is cleared and restored from its
 * changelog partition, a fetch at a time.
 *
 * Commits are visible at once and not flushed to disk one by one (LMDB's noSync): a commit is in the
 * page cache when it returns, so a process that crashes loses nothing, but a machine that crashes
 * may leave the file with any part of its last writes. So the store records the boot it was opened
 * in and whether it was closed cleanly (flushed to disk): a store left open by an earlier boot
 * (the machine crashed or was reset under it) is not trusted, and every task is restored from its
 * changelog. (Flushing each commit, LMDB's synchronous meta-page write, blocked the stage's thread
 * on the disk up to six times a Kafka transaction.)
 */
import { closeSync, fsyncSync, openSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { claimDirectory, type ClaimedDirectory } from '@tradeflow/shared';
import { open, TransactionFlags, type Database, type RootDatabase } from 'lmdb';

/** The next offset per input topic, as the runner gives them. */
export type Offsets = ReadonlyMap<string, bigint>;

/** This boot of the machine (Linux's boot id); undefined where there is none to read. */
function currentBoot(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** What the store records of its own state: the boot it was last opened in, and whether it was then closed cleanly. */
interface StoreState {
  readonly boot: string | null;
  readonly closedCleanly: boolean;
}

export class PositionStore {
  readonly path: string;
  /** Why the tasks' data was not trusted at open (and every task is restored), or undefined. */
  readonly distrusted: string | undefined;
  private readonly root: RootDatabase;
  private readonly directory: string;
  private readonly checkpoints: Database<Record<string, string>, number>;
  private readonly state: Database<StoreState, string>;
  private readonly tasks = new Map<number, TaskStore>();
  private readonly claim: ClaimedDirectory;
  private readonly boot: string | undefined;

  private constructor(claim: ClaimedDirectory, root: RootDatabase, directory: string, boot: string | undefined) {
    this.path = claim.path;
    this.root = root;
    this.directory = directory;
    this.claim = claim;
    this.boot = boot;
    this.checkpoints = root.openDB<Record<string, string>, number>({ name: 'checkpoints' });
    this.state = root.openDB<StoreState, string>({ name: 'state' });
    const before = this.state.get('store');
    if (before !== undefined && !before.closedCleanly && (boot === undefined || before.boot !== boot)) {
      this.distrusted =
        boot === undefined
          ? 'it was not closed cleanly, and without a boot id to read it may have been left by a machine that crashed'
          : 'it was left open by an earlier boot of the machine (a crash or reset may have lost part of its last writes)';
      root.transactionSync(() => this.checkpoints.clearSync(), VISIBLE_NOT_FLUSHED);
    }
    root.transactionSync(() => this.state.putSync('store', { boot: boot ?? null, closedCleanly: false }), VISIBLE_NOT_FLUSHED);
  }

  /**
   * Opens the store of this process under `dir`: `<group>-<host>`, or the next free `-2`, `-3`…
   * when another live process on this host holds that one (two instances started side by side).
   */
  static open(dir: string, group: string, maxBytes = 64 * 1024 ** 3): PositionStore {
    const claim = claimDirectory(dir, `${group}-${hostname()}`);
    try {
      const directory = join(claim.path, 'lmdb');
      const root = open({ path: directory, maxDbs: 1_024, mapSize: maxBytes, compression: false, noSync: true });
      return new PositionStore(claim, root, directory, currentBoot());
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

  /**
   * Writes several tasks' snapshots (null deletes the account) and the offsets each is as of, in
   * one LMDB transaction: one commit for all the tasks a Kafka transaction changed.
   */
  writeAll(items: readonly { readonly task: TaskStore; readonly snapshots: Iterable<readonly [number, Buffer | null]>; readonly offsets?: Offsets | undefined }[]): void {
    this.root.transactionSync(() => {
      for (const { task, snapshots, offsets } of items) task.writeInTransaction(snapshots, offsets);
    }, VISIBLE_NOT_FLUSHED);
  }

  /** Flushes everything to disk, records a clean close (flushed too), and closes. */
  async close(): Promise<void> {
    this.flushFile();
    this.root.transactionSync(() => this.state.putSync('store', { boot: this.boot ?? null, closedCleanly: true }), VISIBLE_NOT_FLUSHED);
    this.flushFile();
    await this.root.close();
    this.claim.release();
  }

  private flushFile(): void {
    const fd = openSync(join(this.directory, 'data.mdb'), 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
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
    this.root.transactionSync(() => this.writeInTransaction(snapshots, offsets), VISIBLE_NOT_FLUSHED);
  }

  /** write() within a transaction the caller holds (PositionStore.writeAll). */
  writeInTransaction(snapshots: Iterable<readonly [number, Buffer | null]>, offsets?: Offsets): void {
    for (const [taxpayerId, snapshot] of snapshots) {
      if (snapshot === null) this.positions.removeSync(taxpayerId);
      else this.positions.putSync(taxpayerId, snapshot);
    }
    if (offsets !== undefined) this.checkpoints.putSync(this.partition, Object.fromEntries([...offsets].map(([topic, next]) => [topic, next.toString()])));
  }

  /** Accounts held (LMDB's count). */
  accounts(): number {
    return (this.positions.getStats() as { entryCount: number }).entryCount;
  }
}
