/**
 * Counters every service keeps, served as JSON on /metrics (and /health) so that the local status
 * view, health checks and benchmarks read the same numbers.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Logger } from './logger.ts';

export interface MetricsSnapshot {
  service: string;
  uptimeSeconds: number;
  consumed: number;
  produced: number;
  dlq: number;
  written: number;
  rejected: number;
  retries: number;
  batches: number;
  lag: number;
  lagByPartition: Record<string, number>;
  healthy: boolean;
  rssBytes: number;
  peakRssBytes: number;
  /** Peaks of what the RSS is made of, sampled every MEMORY_SAMPLE_MS (V8's heap; buffers outside it). */
  memoryPeaks: MemoryPeaks;
  extra: Record<string, number>;
  /** Durations of recent operations (e.g. each step of a transaction), over the last TIMING_WINDOW. */
  timings: Record<string, TimingSummary>;
}

export interface TimingSummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface MemoryPeaks {
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** Memory of Buffers and other objects held outside V8's heap (arrayBuffers is part of it). */
  externalBytes: number;
  arrayBuffersBytes: number;
  /**
   * The RSS that is the process's own (Linux's RssAnon), at its peak: the rest is pages of mapped
   * files (an LMDB store's, the code's), which the kernel can drop and read again. 0 where
   * /proc/self/status is not there.
   */
  anonymousRssBytes: number;
}

/** RssAnon of /proc/self/status, in bytes; undefined where there is no such file (not Linux). */
function anonymousRss(): number | undefined {
  let status: string;
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
  const kb = /^RssAnon:\s+(\d+) kB$/m.exec(status)?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

const MEMORY_SAMPLE_MS = 500;

/**
 * How often the event loop's delay is sampled: a timer due every this many milliseconds records
 * how late it ran ('loop.delay' in the timings), which is how long something held the thread (a
 * long synchronous step, a garbage collection pause) when a response or a fetch was waiting.
 */
export const LOOP_SAMPLE_MS = 20;

/** How many recent durations of each kind the percentiles are taken over. */
export const TIMING_WINDOW = 4_096;

class TimingWindow {
  private readonly values = new Float64Array(TIMING_WINDOW);
  private count = 0;

  add(ms: number): void {
    this.values[this.count % TIMING_WINDOW] = ms;
    this.count++;
  }

  summary(): TimingSummary {
    const sorted = this.values.slice(0, Math.min(this.count, TIMING_WINDOW)).sort();
    const at = (p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!);
    return { count: this.count, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.length === 0 ? 0 : sorted[sorted.length - 1]! };
  }
}

export class ServiceMetrics {
  readonly service: string;
  consumed = 0;
  produced = 0;
  /** Messages sent to a dead-letter topic. */
  dlq = 0;
  /** Points acknowledged by an external store (InfluxDB). */
  written = 0;
  /** Points an external store refused for good (logged with the reason). */
  rejected = 0;
  retries = 0;
  batches = 0;
  healthy = true;
  readonly extra: Record<string, number> = {};
  private readonly lagByPartition = new Map<string, number>();
  private readonly startedAt = Date.now();
  private peakRss = 0;
  private readonly memoryPeaks: MemoryPeaks = { heapUsedBytes: 0, heapTotalBytes: 0, externalBytes: 0, arrayBuffersBytes: 0, anonymousRssBytes: 0 };
  private readonly timingWindows = new Map<string, TimingWindow>();

  constructor(service: string) {
    this.service = service;
    this.sampleMemory();
    setInterval(() => this.sampleMemory(), MEMORY_SAMPLE_MS).unref();
    let due = performance.now() + LOOP_SAMPLE_MS;
    setInterval(() => {
      const now = performance.now();
      this.time('loop.delay', Math.max(0, now - due));
      due = now + LOOP_SAMPLE_MS;
    }, LOOP_SAMPLE_MS).unref();
  }

  private sampleMemory(): void {
    const m = process.memoryUsage();
    const peaks = this.memoryPeaks;
    peaks.heapUsedBytes = Math.max(peaks.heapUsedBytes, m.heapUsed);
    peaks.heapTotalBytes = Math.max(peaks.heapTotalBytes, m.heapTotal);
    peaks.externalBytes = Math.max(peaks.externalBytes, m.external);
    peaks.arrayBuffersBytes = Math.max(peaks.arrayBuffersBytes, m.arrayBuffers);
    this.peakRss = Math.max(this.peakRss, m.rss);
    peaks.anonymousRssBytes = Math.max(peaks.anonymousRssBytes, anonymousRss() ?? 0);
  }

  /** Records how long one `what` took. */
  time(what: string, ms: number): void {
    let window = this.timingWindows.get(what);
    if (window === undefined) this.timingWindows.set(what, (window = new TimingWindow()));
    window.add(ms);
  }

  setLag(topic: string, partition: number, lag: number): void {
    this.lagByPartition.set(`${topic}-${partition}`, lag);
  }

  /** Drops the lag of partitions this member no longer owns (keys `topic-partition`). */
  keepLagOnly(assigned: ReadonlySet<string>): void {
    for (const key of this.lagByPartition.keys()) if (!assigned.has(key)) this.lagByPartition.delete(key);
  }

  snapshot(): MetricsSnapshot {
    const rss = process.memoryUsage.rss();
    this.peakRss = Math.max(this.peakRss, rss);
    let lag = 0;
    for (const value of this.lagByPartition.values()) lag += value;
    return {
      service: this.service,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      consumed: this.consumed,
      produced: this.produced,
      dlq: this.dlq,
      written: this.written,
      rejected: this.rejected,
      retries: this.retries,
      batches: this.batches,
      lag,
      lagByPartition: Object.fromEntries(this.lagByPartition),
      healthy: this.healthy,
      rssBytes: rss,
      peakRssBytes: Math.max(this.peakRss, process.resourceUsage().maxRSS * 1024),
      memoryPeaks: { ...this.memoryPeaks },
      extra: { ...this.extra },
      timings: Object.fromEntries([...this.timingWindows].map(([what, window]) => [what, window.summary()])),
    };
  }
}

/**
 * Listens on host:port, or fails with an error naming the setting when the port is taken or not
 * allowed (EADDRINUSE, EACCES), instead of the bare system error.
 */
export async function listen(server: Server, host: string, port: number, setting: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') reject(new Error(`${setting}=${port}: ${host}:${port} is already in use by another process; set ${setting} to a free port or stop that process`, { cause: error }));
      else if (error.code === 'EACCES') reject(new Error(`${setting}=${port}: not allowed to listen on ${host}:${port} (a port below 1024 needs privileges)`, { cause: error }));
      else reject(error);
    });
    server.listen(port, host, () => resolve());
  });
}

/** Serves GET /metrics (JSON snapshot) and GET /health (200 when healthy, 503 otherwise). */
export async function serveMetrics(metrics: ServiceMetrics, host: string, port: number, logger: Logger): Promise<Server | undefined> {
  if (port === 0) return undefined;
  const server = createServer((req, res) => {
    const snapshot = metrics.snapshot();
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot));
    } else if (req.url === '/health') {
      res.writeHead(snapshot.healthy ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ healthy: snapshot.healthy }));
    } else {
      res.writeHead(404).end();
    }
  });
  await listen(server, host, port, 'METRICS_PORT');
  logger.info({ host, port }, 'metrics endpoint listening');
  return server;
}
