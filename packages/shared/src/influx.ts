/**
 * InfluxDB 1.x HTTP API client: /write with gzip line protocol in batches, /query with InfluxQL.
 * InfluxDB 1.x serves these natively and 2.x/3.x serve compatible endpoints. Lines are encoded
 * with @influxdata/influxdb-client's Point class (see points in influx-writer); that library's
 * own write API speaks only /api/v2/write, which 1.x servers lack, so sending is done here.
 */
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';

const gzip = promisify(gzipCallback);

export interface InfluxOptions {
  readonly url: string;
  readonly database: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly timeoutMs?: number;
  /** gzip level for /write bodies; 0 sends plain text. */
  readonly gzipLevel?: number;
}

export class InfluxError extends Error {
  override readonly name = 'InfluxError';
  readonly status: number | undefined;
  /** False when sending the same request again cannot succeed (bad line protocol, type conflicts). */
  readonly retriable: boolean;
  constructor(message: string, status: number | undefined, retriable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.retriable = retriable;
  }
}

export interface InfluxSeries {
  readonly name: string;
  readonly tags?: Record<string, string>;
  readonly columns: string[];
  readonly values: unknown[][];
}

interface QueryResponse {
  results?: { statement_id?: number; series?: InfluxSeries[]; error?: string }[];
  error?: string;
}

/**
 * A point's time in nanoseconds that is unique per Kafka record and the same on every replay:
 * the event time to the millisecond, then the record's offset modulo 10^6 in the sub-millisecond
 * digits. Two records of one partition collide only if they are 10^6 offsets apart and carry the
 * same millisecond — so points never silently overwrite each other, and a replay overwrites itself.
 */
export function uniquePointTime(epochSeconds: number, offset: string): string {
  const micros = Math.round(epochSeconds * 1e6);
  const millis = BigInt(Math.floor(micros / 1000));
  return (millis * 1_000_000n + (BigInt(offset) % 1_000_000n)).toString();
}

export class InfluxClient {
  readonly database: string;
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly gzipLevel: number;
  private databaseReady = false;

  constructor(options: InfluxOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.database = options.database;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.gzipLevel = options.gzipLevel ?? 1;
    this.headers = {};
    if (options.username !== undefined && options.password !== undefined) {
      this.headers['authorization'] = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
    }
  }

  async ping(): Promise<boolean> {
    try {
      const res = await fetch(`${this.base}/ping`, { headers: this.headers, signal: AbortSignal.timeout(this.timeoutMs) });
      return res.status === 204 || res.status === 200;
    } catch {
      return false;
    }
  }

  async createDatabase(): Promise<void> {
    await this.request('POST', `CREATE DATABASE "${this.database.replace(/"/g, '\\"')}"`);
    this.databaseReady = true;
  }

  /** Writes line-protocol lines with nanosecond timestamps. Creates the database when it is missing. */
  async write(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    if (!this.databaseReady) await this.createDatabase();
    const text = Buffer.from(lines.join('\n'));
    const body = this.gzipLevel > 0 ? await gzip(text, { level: this.gzipLevel }) : text;
    const headers: Record<string, string> = { ...this.headers, 'content-type': 'text/plain; charset=utf-8' };
    if (this.gzipLevel > 0) headers['content-encoding'] = 'gzip';
    const url = `${this.base}/write?db=${encodeURIComponent(this.database)}&precision=ns`;
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new InfluxError(`InfluxDB at ${this.base} is unreachable: ${(error as Error).message}`, undefined, true, { cause: error });
    }
    if (res.status === 204 || res.status === 200) return;
    const detail = await res.text().catch(() => '');
    if (res.status === 404 && detail.includes('database not found')) {
      this.databaseReady = false;
      throw new InfluxError(`InfluxDB database ${this.database} is missing; it will be created`, res.status, true);
    }
    const retriable = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new InfluxError(`InfluxDB write failed with HTTP ${res.status}: ${detail.slice(0, 500)}`, res.status, retriable);
  }

  /** Runs InfluxQL and returns the series of the first statement (empty when it has no rows). */
  async query(influxql: string): Promise<InfluxSeries[]> {
    const response = await this.request('GET', influxql);
    const first = response.results?.[0];
    if (first?.error !== undefined) throw new InfluxError(`InfluxQL error: ${first.error} (query: ${influxql})`, 200, false);
    return first?.series ?? [];
  }

  private async request(method: 'GET' | 'POST', influxql: string): Promise<QueryResponse> {
    const params = new URLSearchParams({ q: influxql, db: this.database, epoch: 'ns' });
    let res: Response;
    try {
      res = await fetch(`${this.base}/query?${params}`, { method, headers: this.headers, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new InfluxError(`InfluxDB at ${this.base} is unreachable: ${(error as Error).message}`, undefined, true, { cause: error });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new InfluxError(`InfluxDB query failed with HTTP ${res.status}: ${text.slice(0, 500)}`, res.status, res.status >= 500);
    }
    const parsed = JSON.parse(text) as QueryResponse;
    if (parsed.error !== undefined) throw new InfluxError(`InfluxDB: ${parsed.error}`, res.status, false);
    return parsed;
  }
}
