/**
 * fill-publisher's positions on disk, so that ten million accounts do not live in the heap and a
 * restart does not read the `positions` changelog again.
 *
 * A SQLite database (Node's built-in node:sqlite) with one table per task (fills partition): each
 * account's latest snapshot, as the compacted `positions` topic holds it — text when the positions
 * stage wrote it itself (its own form, which a fill patches as it is; PositionBook), the exact bytes
 * when it was restored from the changelog (written by anything, decoded in full when a fill first
 * reaches it) — and the group's committed input offsets the task's data is as of. A task's changes and those offsets are
 * written in one SQLite transaction after the Kafka transaction that carried them committed, so the
 * store is always as of some committed offsets. On assignment the runner opens a task from the store
 * only when those are exactly the group's committed offsets; otherwise (a crash between the two
 * commits, the partition was owned elsewhere meanwhile, an OS crash lost the last writes) the task
 * is cleared and restored from its changelog partition, a fetch at a time.
 *
 * SQLite reads and writes its file through its own small page cache (PRAGMA cache_size), not a
 * memory map: the store's pages are the OS's page cache, not the process's memory. (An LMDB store
 * before this mapped its whole file, which every write touched: 53 MB of fill-publisher's 279 MB
 * peak RSS in the order benchmark, for 10,000 accounts; docs/performance.md.)
 *
 * Commits are visible at once and not flushed to disk one by one (write-ahead log, synchronous OFF):
 * a commit is in the page cache when it returns, so a process that crashes loses nothing, but a
 * machine that crashes may leave the files with any part of their last writes. So the store records,
 * in a file of its own flushed at open and at close, the boot it was opened in and whether it was
 * closed cleanly: a database left open by an earlier boot (the machine crashed or was reset under it)
 * is not trusted and is deleted, and every task is restored from its changelog.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { claimDirectory, type ClaimedDirectory } from '@tradeflow/shared';

/** The next offset per input topic, as the runner gives them. */
export type Offsets = ReadonlyMap<string, bigint>;

/** An account's snapshot as stored: the stage's own text (SQLite TEXT), or a changelog record's bytes (BLOB). */
export type Snapshot = string | Buffer;

/** The database's file name in the store's directory (with SQLite's -wal and -shm beside it). */
export const DATABASE_FILE = 'positions.sqlite';
/** What the store records of its own state (StoreState), as JSON. */
export const STATE_FILE = 'state.json';
/** SQLite's page cache, in KiB (negative cache_size): what the store holds in memory beyond the OS's page cache. */
const PAGE_CACHE_KIB = 4_096;

/** This boot of the machine (Linux's boot id); undefined where there is none to read. */
function currentBoot(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** What the store records of its own state: the boot it was last opened in, and whether it was then closed cleanly. */
export interface StoreState {
  readonly boot: string | null;
  readonly closedCleanly: boolean;
}

function readState(path: string): StoreState | undefined {
  try {
    const state = JSON.parse(readFileSync(path, 'utf8')) as Partial<StoreState>;
    return typeof state.closedCleanly === 'boolean' ? { boot: typeof state.boot === 'string' ? state.boot : null, closedCleanly: state.closedCleanly } : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a file and flushes it to disk before returning. */
function writeFlushed(path: string, text: string): void {
  writeFileSync(path, text);
  flushFile(path);
}

function flushFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** One SQL transaction around `work`, rolled back if it throws. */
function inTransaction(db: DatabaseSync, work: () => void): void {
  db.exec('BEGIN');
  try {
    work();
  } catch (error) {
    db.exec('ROLLBACK');
    throw error;
  }
  db.exec('COMMIT');
}

export class PositionStore {
  readonly path: string;
  /** Why the tasks' data was not trusted at open (and every task is restored), or undefined. */
  readonly distrusted: string | undefined;
  private readonly db: DatabaseSync;
  private readonly tasks = new Map<number, TaskStore>();
  private readonly claim: ClaimedDirectory;
  private readonly boot: string | undefined;
  private readonly checkpoints: { readonly get: StatementSync; readonly put: StatementSync; readonly remove: StatementSync };

  private constructor(claim: ClaimedDirectory, boot: string | undefined) {
    this.path = claim.path;
    this.claim = claim;
    this.boot = boot;
    const file = join(claim.path, DATABASE_FILE);
    const before = readState(join(claim.path, STATE_FILE));
    if (existsSync(file) && (before === undefined || (!before.closedCleanly && (boot === undefined || before.boot !== boot)))) {
      this.distrusted =
        before === undefined
          ? 'it has no record of how it was closed'
          : boot === undefined
            ? 'it was not closed cleanly, and without a boot id to read it may have been left by a machine that crashed'
            : 'it was left open by an earlier boot of the machine (a crash or reset may have lost part of its last writes)';
      for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
    }
    // An LMDB store of an earlier version: its tasks are restored from the changelog into this one.
    rmSync(join(claim.path, 'lmdb'), { recursive: true, force: true });
    writeFlushed(join(claim.path, STATE_FILE), JSON.stringify({ boot: boot ?? null, closedCleanly: false } satisfies StoreState));
    this.db = new DatabaseSync(file);
    this.db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -${PAGE_CACHE_KIB};`);
    this.db.exec('CREATE TABLE IF NOT EXISTS checkpoints (task INTEGER PRIMARY KEY, offsets TEXT NOT NULL)');
    this.checkpoints = {
      get: this.db.prepare('SELECT offsets FROM checkpoints WHERE task = ?'),
      put: this.db.prepare('INSERT INTO checkpoints (task, offsets) VALUES (?, ?) ON CONFLICT (task) DO UPDATE SET offsets = excluded.offsets'),
      remove: this.db.prepare('DELETE FROM checkpoints WHERE task = ?'),
    };
  }

  /**
   * Opens the store of this process under `dir`: `<group>-<host>`, or the next free `-2`, `-3`…
   * when another live process on this host holds that one (two instances started side by side).
   */
  static open(dir: string, group: string): PositionStore {
    const claim = claimDirectory(dir, `${group}-${hostname()}`);
    try {
      return new PositionStore(claim, currentBoot());
    } catch (error) {
      claim.release();
      throw error;
    }
  }

  /** The store of one task (fills partition). */
  task(partition: number): TaskStore {
    let task = this.tasks.get(partition);
    if (task === undefined) {
      if (!Number.isSafeInteger(partition) || partition < 0) throw new Error(`not a partition: ${partition}`);
      task = new TaskStore(this.db, this.checkpoints, partition);
      this.tasks.set(partition, task);
    }
    return task;
  }

  /**
   * Writes several tasks' snapshots (null deletes the account) and the offsets each is as of, in
   * one SQLite transaction: one commit for all the tasks a Kafka transaction changed.
   */
  writeAll(items: readonly { readonly task: TaskStore; readonly snapshots: Iterable<readonly [number, Snapshot | null]>; readonly offsets?: Offsets | undefined }[]): void {
    inTransaction(this.db, () => {
      for (const { task, snapshots, offsets } of items) task.writeInTransaction(snapshots, offsets);
    });
  }

  /** Folds the write-ahead log into the database, flushes it to disk, records a clean close (flushed too), and closes. */
  async close(): Promise<void> {
    // The last connection's close folds the log into the database file and removes it.
    this.db.close();
    flushFile(join(this.path, DATABASE_FILE));
    writeFlushed(join(this.path, STATE_FILE), JSON.stringify({ boot: this.boot ?? null, closedCleanly: true } satisfies StoreState));
    this.claim.release();
  }
}

export class TaskStore {
  readonly partition: number;
  private readonly db: DatabaseSync;
  private readonly checkpoints: { readonly get: StatementSync; readonly put: StatementSync; readonly remove: StatementSync };
  private readonly select: StatementSync;
  private readonly upsert: StatementSync;
  private readonly remove: StatementSync;

  constructor(db: DatabaseSync, checkpoints: TaskStore['checkpoints'], partition: number) {
    this.db = db;
    this.checkpoints = checkpoints;
    this.partition = partition;
    // One table per task, keyed by taxpayer id (SQLite's rowid: the fastest lookup it has).
    const table = `positions_${partition}`;
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (taxpayer_id INTEGER PRIMARY KEY, snapshot ANY NOT NULL) STRICT`);
    this.select = db.prepare(`SELECT snapshot FROM ${table} WHERE taxpayer_id = ?`);
    this.select.setReturnArrays(true);
    this.upsert = db.prepare(`INSERT INTO ${table} (taxpayer_id, snapshot) VALUES (?, ?) ON CONFLICT (taxpayer_id) DO UPDATE SET snapshot = excluded.snapshot`);
    this.remove = db.prepare(`DELETE FROM ${table} WHERE taxpayer_id = ?`);
  }

  /** An account's latest snapshot: the text the stage wrote, or the bytes restored from the changelog. */
  get(taxpayerId: number): Snapshot | undefined {
    const row = this.select.get(taxpayerId) as unknown as [string | Uint8Array] | undefined;
    if (row === undefined) return undefined;
    const value = row[0];
    return typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }

  /** The committed offsets the task's data is as of; undefined while it is being restored or was never written. */
  offsets(): Offsets | undefined {
    const row = this.checkpoints.get.get(this.partition) as { offsets: string } | undefined;
    if (row === undefined) return undefined;
    return new Map(Object.entries(JSON.parse(row.offsets) as Record<string, string>).map(([topic, next]) => [topic, BigInt(next)]));
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
    inTransaction(this.db, () => {
      this.checkpoints.remove.run(this.partition);
      this.db.exec(`DELETE FROM positions_${this.partition}`);
    });
  }

  /** Writes snapshots (null deletes the account) and, when given, the offsets they are as of, in one transaction. */
  write(snapshots: Iterable<readonly [number, Snapshot | null]>, offsets?: Offsets): void {
    inTransaction(this.db, () => this.writeInTransaction(snapshots, offsets));
  }

  /** write() within a transaction the caller holds (PositionStore.writeAll). */
  writeInTransaction(snapshots: Iterable<readonly [number, Snapshot | null]>, offsets?: Offsets): void {
    for (const [taxpayerId, snapshot] of snapshots) {
      if (snapshot === null) this.remove.run(taxpayerId);
      else this.upsert.run(taxpayerId, snapshot);
    }
    if (offsets !== undefined) this.checkpoints.put.run(this.partition, JSON.stringify(Object.fromEntries([...offsets].map(([topic, next]) => [topic, next.toString()]))));
  }

  /** Accounts held. */
  accounts(): number {
    return Number((this.db.prepare(`SELECT count(*) AS n FROM positions_${this.partition}`).get() as { n: number | bigint }).n);
  }
}
