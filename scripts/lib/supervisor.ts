/**
 * Keeps the processes of a local run running: a process that exits unasked is started again after
 * a backoff (1 s, doubling up to 30 s; back to 1 s once it ran for a minute), and each one's
 * state, restarts and last exit are there for the status view. Stopping sends SIGTERM to each
 * process it started, by its pid, and waits for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { MetricsSnapshot } from '@tradeflow/shared';

export interface ProcessDefinition {
  readonly name: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly logFile: string;
  /** Its /metrics port, when it serves one. */
  readonly metricsPort?: number;
  /** Started again when it exits unasked with this code (a feed that finished exits 0: not restarted). */
  readonly restartOn: (code: number | null, signal: NodeJS.Signals | null) => boolean;
  /** Called before each restart, for arguments that must change (a new seed). */
  readonly argvForRestart?: (restart: number) => readonly string[];
}

export type ProcessState = 'running' | 'waiting to restart' | 'exited' | 'stopped';

export interface ExitRecord {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: Date;
}

export interface Supervised {
  readonly definition: ProcessDefinition;
  readonly state: ProcessState;
  readonly pid: number | undefined;
  readonly restarts: number;
  readonly lastExit: ExitRecord | undefined;
  /** When it was last started. */
  readonly since: Date;
  /** When it will be started again (state 'waiting to restart'). */
  readonly restartAt: Date | undefined;
  metrics(): Promise<MetricsSnapshot | undefined>;
}

const INITIAL_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;
const STABLE_MS = 60_000;
const TAIL_LINES = 50;

/**
 * Why a process exited, from the last lines it wrote: its last error or fatal log line (message and
 * error), else the last plain line that names an error (an uncaught one's "Error: …" above its
 * stack), else its last plain line.
 */
export function lastError(lines: readonly string[]): string | undefined {
  const short = (text: string) => (text.length > 400 ? `${text.slice(0, 400)}…` : text);
  for (let i = lines.length - 1; i >= 0; i--) {
    let entry: { level?: unknown; msg?: unknown; err?: { message?: unknown; type?: unknown } };
    try {
      entry = JSON.parse(lines[i]!) as typeof entry;
    } catch {
      continue;
    }
    if (typeof entry.level !== 'number' || entry.level < 50) continue;
    const message = typeof entry.err?.message === 'string' ? entry.err.message : undefined;
    return short([entry.msg, message].filter((part) => typeof part === 'string' && part !== '').join(': '));
  }
  const plain = lines.filter((line) => !line.startsWith('{'));
  if (plain.length === 0) return undefined;
  const thrown = plain.findLast((line) => /^\S*(Error|Exception)\b.*:/.test(line.trim()));
  return short((thrown ?? plain[plain.length - 1]!).trim());
}

class Entry implements Supervised {
  readonly definition: ProcessDefinition;
  state: ProcessState = 'running';
  restarts = 0;
  lastExit: ExitRecord | undefined;
  since = new Date();
  restartAt: Date | undefined;
  child: ChildProcess | undefined;
  private backoff = INITIAL_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private log: WriteStream;
  private readonly onEvent: (line: string) => void;
  private stopping = false;
  private exitedOnce: Promise<void> = Promise.resolve();
  /** The last lines the current run wrote, for saying why it exited. */
  private tail: string[] = [];

  constructor(definition: ProcessDefinition, onEvent: (line: string) => void) {
    this.definition = definition;
    this.onEvent = onEvent;
    this.log = createWriteStream(definition.logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.state === 'running' ? this.child?.pid : undefined;
  }

  start(argv: readonly string[] = this.definition.argv): void {
    const [command, ...args] = argv;
    const child = spawn(command!, args, { env: { ...this.definition.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.state = 'running';
    this.since = new Date();
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    this.tail = [];
    let partial = '';
    const keep = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop()!;
      this.tail.push(...lines.filter((line) => line.trim() !== ''));
      if (partial.length > 64 * 1024) partial = '';
      if (this.tail.length > TAIL_LINES) this.tail.splice(0, this.tail.length - TAIL_LINES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.onEvent(`${this.definition.name} started (pid ${child.pid})`);
    this.exitedOnce = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.lastExit = { code, signal, at: new Date() };
        resolve();
        this.exited(code, signal);
      }),
    );
  }

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    const how = signal ?? `code ${code}`;
    if (this.stopping) {
      this.state = 'stopped';
      return;
    }
    if (!this.definition.restartOn(code, signal)) {
      this.state = 'exited';
      this.onEvent(`${this.definition.name} exited (${how})`);
      return;
    }
    if (Date.now() - this.since.getTime() >= STABLE_MS) this.backoff = INITIAL_BACKOFF_MS;
    const wait = this.backoff;
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    this.state = 'waiting to restart';
    this.restartAt = new Date(Date.now() + wait);
    const why = lastError(this.tail);
    this.onEvent(`${this.definition.name} exited unasked (${how})${why === undefined ? '' : `: ${why}`}; starting it again in ${wait / 1000} s (log: ${this.definition.logFile})`);
    this.timer = setTimeout(() => {
      this.restarts++;
      this.restartAt = undefined;
      this.start(this.definition.argvForRestart?.(this.restarts) ?? this.definition.argv);
    }, wait);
  }

  async metrics(): Promise<MetricsSnapshot | undefined> {
    if (this.definition.metricsPort === undefined || this.state !== 'running') return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${this.definition.metricsPort}/metrics`, { signal: AbortSignal.timeout(2_000) });
      return (await res.json()) as MetricsSnapshot;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<ExitRecord | undefined> {
    this.stopping = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await this.exitedOnce;
      clearTimeout(killer);
    }
    this.state = 'stopped';
    this.log.end();
    return this.lastExit;
  }
}

export class Supervisor {
  private readonly entries: Entry[] = [];
  private readonly onEvent: (line: string) => void;

  constructor(onEvent: (line: string) => void) {
    this.onEvent = onEvent;
  }

  /** Starts a process and keeps it running. */
  start(definition: ProcessDefinition): Supervised {
    const entry = new Entry(definition, this.onEvent);
    this.entries.push(entry);
    entry.start();
    return entry;
  }

  get processes(): readonly Supervised[] {
    return this.entries;
  }

  /** Stops every process, the ones without /metrics (feeds) first; resolves with how each exited. */
  async stopAll(): Promise<{ name: string; exit: ExitRecord | undefined }[]> {
    const stop = (entries: Entry[]) => Promise.all(entries.map(async (entry) => ({ name: entry.definition.name, exit: await entry.stop() })));
    const first = await stop(this.entries.filter((e) => e.definition.metricsPort === undefined));
    return [...first, ...(await stop(this.entries.filter((e) => e.definition.metricsPort !== undefined)))];
  }
}
