import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, reservePorts, runScript, startService, stopScripts } from './processes.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('startService', () => {
  it('writes its log file into a directory that does not exist yet (a new TEST_LOG_DIR)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tradeflow-logs-'));
    dirs.push(dir);
    const logFile = join(dir, 'new', 'nested', 'no-such-service-1.log');
    // A service that does not exist: node exits at once with an error, which the log file keeps
    // (startService names the exit as soon as it sees it, well before its timeout).
    await expect(startService('no-such-service', { env: {}, logFile, readyTimeoutMs: 60_000 })).rejects.toThrow(/no-such-service exited with 1/);
    await expect.poll(() => readFileSync(logFile, 'utf8'), { timeout: 10_000 }).toMatch(/Cannot find module/);
  });
});

describe('stopScripts', () => {
  it('kills a script still running, so a failed test leaves no feed behind', async () => {
    // queue-ticks with a broker nobody listens on keeps retrying; a count this high never ends by itself.
    const feed = runScript('queue-ticks.ts', ['--count', '1000000000', '--rate', '10', '--quiet'], { KAFKA_BROKERS: '127.0.0.1:1', LOG_LEVEL: 'fatal' });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    stopScripts();
    await expect(feed).rejects.toThrow(/queue-ticks.ts .* exited with null/);
  });
});

describe('freePort', () => {
  it('never hands out the same port twice, nor a reserved one (the kernel alone repeats itself)', async () => {
    const reserved = await freePort();
    reservePorts(String(reserved + 2), undefined, 'not a port');
    const ports: number[] = [];
    for (let i = 0; i < 3_000; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    expect(ports).not.toContain(reserved);
    expect(ports).not.toContain(reserved + 2);
  });
});

describe('endChildrenOnSignals', () => {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it.each([['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]] as const)('%s to a benchmark ends it and the child it started (kill <pid> left them running)', async (signal, code) => {
    const dir = mkdtempSync(join(tmpdir(), 'tradeflow-signals-'));
    dirs.push(dir);
    const script = join(dir, 'bench.ts');
    writeFileSync(
      script,
      [
        `import { spawn } from 'node:child_process';`,
        `import { endChildrenOnSignals, ownChild } from ${JSON.stringify(join(import.meta.dirname, 'processes.ts'))};`,
        `endChildrenOnSignals();`,
        `const feed = ownChild(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }));`,
        `process.stdout.write(feed.pid + '\\n');`,
        `setInterval(() => {}, 1000);`,
      ].join('\n'),
    );
    const bench = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    bench.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const feedPid = await new Promise<number>((resolve, reject) => {
      bench.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.endsWith('\n')) resolve(Number(out.trim()));
      });
      bench.once('exit', () => reject(new Error(`the script exited first: ${err}`)));
    });
    expect(alive(feedPid)).toBe(true);
    const exited = new Promise<number | null>((resolve) => bench.once('exit', resolve));
    // Only the script gets the signal, as `kill <pid>` does (a Ctrl-C reaches the whole group).
    bench.kill(signal);
    expect(await exited).toBe(code);
    expect(err).toContain(`${signal}: stopping the 1 processes this one started`);
    await expect.poll(() => alive(feedPid), { timeout: 30_000 }).toBe(false);
  });
});
