import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from './processes.ts';
import { lastError, Supervisor } from './supervisor.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('lastError', () => {
  it("is a service's last error or fatal log line, with its error's message", () => {
    const lines = [
      JSON.stringify({ level: 30, msg: 'positions store opened' }),
      JSON.stringify({ level: 60, msg: 'failed to start', err: { type: 'Error', message: 'MDB_INVALID: File is not an LMDB file' } }),
      JSON.stringify({ level: 30, msg: 'closing' }),
    ];
    expect(lastError(lines)).toBe('failed to start: MDB_INVALID: File is not an LMDB file');
  });

  it("is an uncaught error's line, not the stack under it", () => {
    const lines = ['file:///x/main.ts:3', '    throw new Error("boom")', '', 'Error: boom', '    at main (file:///x/main.ts:3:9)', '', 'Node.js v24.21.0'];
    expect(lastError(lines)).toBe('Error: boom');
  });

  it('is nothing when the process wrote nothing, or only info lines', () => {
    expect(lastError([])).toBeUndefined();
    expect(lastError([JSON.stringify({ level: 30, msg: 'started' })])).toBeUndefined();
  });
});

describe('Supervisor', () => {
  it('says why a process exited unasked, from what it logged, and restarts it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'supervisor-test-'));
    dirs.push(dir);
    const events: string[] = [];
    const supervisor = new Supervisor((line) => events.push(line));
    const fatal = JSON.stringify({ level: 60, msg: 'failed to start', err: { message: 'no free position store' } });
    const logFile = join(dir, 'crashing.log');
    supervisor.start({
      name: 'crashing',
      argv: [process.execPath, '-e', `console.log(${JSON.stringify(JSON.stringify({ level: 30, msg: 'starting' }))}); console.log(${JSON.stringify(fatal)}); process.exit(1)`],
      env: { PATH: process.env['PATH'] ?? '' },
      logFile,
      restartOn: (code) => code !== 0,
    });
    await waitFor('a restart', async () => (events.filter((e) => e.startsWith('crashing started')).length >= 2 ? true : undefined), 60_000, 50);
    await supervisor.stopAll();
    expect(events.find((e) => e.includes('exited unasked'))).toMatch(/^crashing exited unasked \(code 1\): failed to start: no free position store; starting it again in 1 s \(log: .*crashing\.log\)$/);
    expect(readFileSync(logFile, 'utf8')).toContain('no free position store');
  });
});
