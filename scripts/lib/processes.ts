/**
 * Starting the services as real processes, reading their /metrics, and stopping them by their own
 * pid. Used by the local runner, the benchmarks and the integration tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import type { MetricsSnapshot } from '@tradeflow/shared';
import { nodeOptionsVariable, serviceNodeEnv } from './node-options.ts';
import { REPO } from './repo.ts';

export { REPO };

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Thrown by a waitFor probe when waiting longer cannot help (waitFor throws it at once). */
export class WaitingCannotHelp extends Error {}

/** Polls `probe` until it gives a value; its errors are retried until the timeout, except WaitingCannotHelp. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = undefined;
    } catch (error) {
      if (error instanceof WaitingCannotHelp) throw error;
      last = error;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
}

/** Services started here do not outlive the process that started them, whatever way it ends. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** A child of the caller's own (a feed, a load generator) that must not outlive this process either. */
export function ownChild<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/**
 * For a script run by hand (a benchmark): SIGINT, SIGTERM or SIGHUP end it and every child it
 * started. Node ends a process on those signals without its 'exit' handlers, so `kill <pid>` (or a
 * Ctrl-C that reached only this process) left its services and feeds running. Not for run-local,
 * which stops its services gracefully itself, nor for tests (the runner handles its signals).
 */
export function endChildrenOnSignals(): void {
  const codes = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;
  for (const [signal, code] of Object.entries(codes)) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the ${children.size} processes this one started\n`);
      process.exit(code);
    });
  }
}

/** Scripts started by runScript that are still running. */
const scripts = new Set<ChildProcess>();

/** SIGKILLs every script runScript started that is still running (their runScript calls reject). */
export function stopScripts(): void {
  for (const child of scripts) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * Ports this process handed out, or was told are taken. The kernel's choice for a port of its own
 * is random, so two calls in a row can be given the same free port (nine picks in a row repeated
 * one in 25 of 4,000 tries): the first child listening on it would make the second fail to start,
 * again at every restart. So a port is handed out once.
 */
const handedOut = new Set<number>();

/** Counts `ports` as taken (ones another process chose and will listen on), so freePort never returns them. */
export function reservePorts(...ports: readonly (number | string | undefined)[]): void {
  for (const port of ports) if (port !== undefined && Number.isInteger(Number(port)) && Number(port) > 0) handedOut.add(Number(port));
}

/** A port free now on 127.0.0.1 that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly metricsPort: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  metrics(): Promise<MetricsSnapshot>;
  /** The last megabyte or so of the process's output. */
  output(): string;
  /** Sends the signal and resolves with the exit code and how long the exit took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

export interface StartOptions {
  readonly env: Record<string, string>;
  /** Also append the output to this file. */
  readonly logFile?: string;
  readonly readyTimeoutMs?: number;
}

/** Starts services/<name>/src/main.ts with Node and waits until it serves /metrics. */
export async function startService(name: string, options: StartOptions): Promise<ServiceProcess> {
  const metricsPort = await freePort();
  // SERVICE_NODE_ARGS: extra node flags for the services only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env['SERVICE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  // Its heap bounds as users run it (node-options.ts): <SERVICE>_NODE_OPTIONS from here or options.env.
  const variable = nodeOptionsVariable(name);
  const child = spawn(process.execPath, [...nodeArgs, `${REPO}/services/${name}/src/main.ts`], {
    env: { PATH: process.env['PATH'] ?? '', METRICS_PORT: String(metricsPort), ...options.env, ...serviceNodeEnv(name, { [variable]: process.env[variable], NODE_COMPILE_CACHE: process.env['NODE_COMPILE_CACHE'], ...options.env }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  // The directory may be new (TEST_LOG_DIR=/some/new/dir): created first, or the stream fails later, uncaught.
  if (options.logFile !== undefined) mkdirSync(dirname(options.logFile), { recursive: true });
  const file = options.logFile === undefined ? undefined : createWriteStream(options.logFile, { flags: 'a' });
  let output = '';
  const keep = (chunk: Buffer) => {
    file?.write(chunk);
    output += chunk.toString();
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      file?.end();
      resolve({ code, signal });
    });
  });
  const service: ServiceProcess = {
    name,
    child,
    metricsPort,
    exited,
    output: () => output,
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(30_000) });
      return (await res.json()) as MetricsSnapshot;
    },
    stop: async (signal = 'SIGTERM') => {
      const started = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const result = await exited;
      return { ...result, ms: Date.now() - started };
    },
  };
  try {
    await waitFor(
      `${name} to serve /metrics`,
      async () => {
        if (child.exitCode !== null) throw new WaitingCannotHelp(`${name} exited with ${child.exitCode}:\n${output}`);
        return (await service.metrics()).service === name ? true : undefined;
      },
      options.readyTimeoutMs ?? 60_000,
    );
  } catch (error) {
    // Not ready in time: it is not left running behind the caller's back.
    await service.stop('SIGKILL');
    throw error;
  }
  return service;
}

/** Runs a script of scripts/ with Node and resolves with its stderr once it exits 0. */
export async function runScript(script: string, args: readonly string[], env: Record<string, string> = {}): Promise<string> {
  const child = spawn(process.execPath, [`${REPO}/scripts/${script}`, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A feed of a test that failed must not go on writing into the next test's topics.
  children.add(child);
  scripts.add(child);
  child.once('exit', () => {
    children.delete(child);
    scripts.delete(child);
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}:\n${stderr}`);
  return stderr;
}

/** Runs a program to its end: its exit code and everything it wrote. */
export async function runCommand(argv: readonly string[], env: Record<string, string | undefined> = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [command, ...args] = argv;
  const child = spawn(command!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, stdout, stderr };
}
