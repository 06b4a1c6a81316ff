import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimDirectory } from './store-dir.ts';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});
function freshRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'store-dir-'));
  roots.push(root);
  return root;
}

/** The pid of a process that has exited (nothing has it now). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

function writeLock(dir: string, content: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'owner.pid'), content);
}

describe('claimDirectory', () => {
  it('gives the same name at every claim while it is free, and the next free one while it is held', () => {
    const root = freshRoot();
    const first = claimDirectory(root, 'fills-host');
    expect(first.path).toBe(join(root, 'fills-host'));
    expect(readFileSync(join(first.path, 'owner.pid'), 'utf8')).toBe(`${process.pid}\n`);
    const second = claimDirectory(root, 'fills-host');
    expect(second.path).toBe(join(root, 'fills-host-2'));
    first.release();
    expect(existsSync(join(first.path, 'owner.pid'))).toBe(false);
    // Released: the next claim (a restart) gets it again, not a third directory.
    const again = claimDirectory(root, 'fills-host');
    expect(again.path).toBe(first.path);
    expect(readdirSync(root).sort()).toEqual(['fills-host', 'fills-host-2']);
    again.release();
    second.release();
  });

  it("skips a directory a live process holds, and takes over one whose process is gone, garbled, or this pid's from an earlier life", async () => {
    const root = freshRoot();
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      writeLock(join(root, 'p'), `${live.pid}\n`);
      writeLock(join(root, 'p-2'), `${deadPid()}\n`);
      writeLock(join(root, 'p-3'), '');
      // A container started again runs as the same pid (1) as the one that wrote the lock.
      writeLock(join(root, 'p-4'), `${process.pid}\n`);
      const claims = [claimDirectory(root, 'p'), claimDirectory(root, 'p'), claimDirectory(root, 'p')];
      expect(claims.map((c) => c.path)).toEqual([join(root, 'p-2'), join(root, 'p-3'), join(root, 'p-4')]);
      for (const claim of claims) expect(readFileSync(join(claim.path, 'owner.pid'), 'utf8')).toBe(`${process.pid}\n`);
      expect(readFileSync(join(root, 'p', 'owner.pid'), 'utf8')).toBe(`${live.pid}\n`);
      expect(claimDirectory(root, 'p').path).toBe(join(root, 'p-5'));
    } finally {
      live.kill('SIGKILL');
      await new Promise((resolve) => live.once('exit', resolve));
    }
    // Its owner gone, the first directory is free again.
    expect(claimDirectory(root, 'p').path).toBe(join(root, 'p'));
  });

  it('gives processes claiming at the same moment a directory each, also when they take over the same dead locks', async () => {
    const root = freshRoot();
    const dead = deadPid();
    for (const dir of ['q', 'q-2', 'q-3']) writeLock(join(root, dir), `${dead}\n`);
    // Each process loads the module, then waits for one moment shared by all and claims at once:
    // on two cores at least two claim within the same microseconds.
    const script = `
      import { claimDirectory } from ${JSON.stringify(join(import.meta.dirname, 'store-dir.ts'))};
      const at = Number(process.argv[1]);
      while (Date.now() < at);
      const claim = claimDirectory(${JSON.stringify(root)}, 'q');
      process.stdout.write(claim.path + '\\n');
      process.stdin.resume();
      process.stdin.on('end', () => { claim.release(); process.exit(0); });
    `;
    // Far enough ahead for eight processes to start on a busy machine (one that starts late claims
    // late: the test then checks less, and still holds).
    const at = Date.now() + 3_000;
    const children = Array.from({ length: 8 }, () => spawn(process.execPath, ['--input-type=module', '-e', script, String(at)], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const paths = await Promise.all(
      children.map(
        (child) =>
          new Promise<string>((resolve, reject) => {
            let out = '';
            child.stdout.on('data', (chunk: Buffer) => {
              out += chunk.toString();
              if (out.endsWith('\n')) resolve(out.trim());
            });
            child.once('exit', (code) => reject(new Error(`a claiming process exited (${code}) before printing its directory`)));
          }),
      ),
    );
    for (const child of children) child.stdin.end();
    await Promise.all(children.map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)))));
    expect(new Set(paths).size).toBe(8);
    for (const path of paths) expect(path).toMatch(new RegExp(`^${root}/q(-\\d+)?$`));
    // Each released its own lock and left no file aside.
    for (const dir of readdirSync(root)) expect(readdirSync(join(root, dir))).toEqual([]);
  });
});
