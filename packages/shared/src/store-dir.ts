/**
 * A directory of its own for a process's on-disk store, under a parent that several instances
 * share: `<name>`, or the next free `<name>-2`, `<name>-3`… while a live process of this host holds
 * the one before (two instances started side by side).
 *
 * The name depends on nothing that changes from one run to the next (a port, a pid), so a restart
 * finds its store again and leaves no directory behind. The claim is a lock file holding the
 * owner's pid, linked into place (which fails if one is there): of two processes starting at once
 * only one gets a directory. A lock whose process is gone (SIGKILL, a crash, a container started
 * again as pid 1) is taken over: removed under a takeover lock (one taker at a time) if it still
 * names the dead owner, then claimed like a free one.
 */
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ClaimedDirectory {
  /** The directory, created if it did not exist. */
  readonly path: string;
  /** Gives the directory up (its contents stay for the next owner). */
  release(): void;
}

const LOCK_FILE = 'owner.pid';
/** Directories this process holds (its pid is in their lock files, so the pid alone cannot tell). */
const claimed = new Set<string>();

export function claimDirectory(parent: string, name: string, maxInstances = 64): ClaimedDirectory {
  for (let n = 1; n <= maxInstances; n++) {
    const path = join(parent, n === 1 ? name : `${name}-${n}`);
    if (claimed.has(path)) continue;
    mkdirSync(path, { recursive: true });
    const lock = join(path, LOCK_FILE);
    if (!takeLock(lock)) continue;
    claimed.add(path);
    let released = false;
    return {
      path,
      release: () => {
        if (released) return;
        released = true;
        claimed.delete(path);
        if (readPid(lock) === process.pid) rmSync(lock, { force: true });
      },
    };
  }
  throw new Error(`no free store directory under ${parent}: ${maxInstances} live processes hold ${name} to ${name}-${maxInstances}`);
}

function takeLock(lock: string): boolean {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createLock(lock)) return true;
    const owner = readPid(lock);
    if (owner === undefined) continue; // released meanwhile: try again
    if (owner !== process.pid && isAlive(owner)) return false;
    // A lock no live process holds. It is removed under a takeover lock of its own, and only if it
    // still names that dead owner when read again there: no taker ever removes a lock a live
    // process wrote (renaming it aside did, when a third process linked a lock in meanwhile).
    if (!withTakeover(lock, () => {
      if (readPid(lock) === owner) rmSync(lock, { force: true });
    })) return false;
  }
  return false;
}

/** A takeover lock left by a taker that died in it is older than this (a takeover takes microseconds). */
const STALE_TAKEOVER_MS = 10_000;

/** Runs `fn` holding `<lock>.takeover`; false if another taker holds it now. */
function withTakeover(lock: string, fn: () => void): boolean {
  const takeover = `${lock}.takeover`;
  if (!createLock(takeover)) {
    let age: number;
    try {
      age = Date.now() - statSync(takeover).mtimeMs;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true; // done meanwhile: try again
      throw error;
    }
    if (age < STALE_TAKEOVER_MS) return false;
    rmSync(takeover, { force: true });
    if (!createLock(takeover)) return false;
  }
  try {
    fn();
  } finally {
    rmSync(takeover, { force: true });
  }
  return true;
}

/** Written aside and linked into place, so that no one ever reads a lock without its pid. */
function createLock(lock: string): boolean {
  const written = `${lock}.${process.pid}.new`;
  writeFileSync(written, `${process.pid}\n`);
  try {
    linkSync(written, lock);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(written, { force: true });
  }
}

function readPid(lock: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(lock, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const pid = Number(text.trim());
  // An empty or garbled lock (a crash while writing it): no live owner.
  return Number.isInteger(pid) && pid > 0 ? pid : 0;
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
