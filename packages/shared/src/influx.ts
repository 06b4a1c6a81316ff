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

/** Kinds of InfluxDB failures, named for the logs like Kafka's error codes. */
export type InfluxFailure =
  | 'INFLUX_UNREACHABLE'
  | 'INFLUX_UNAUTHORIZED'
  | 'INFLUX_FORBIDDEN'
  | 'INFLUX_DATABASE_MISSING'
  | 'INFLUX_REFUSED'
  | 'INFLUX_SERVER_ERROR';

export class InfluxError extends Error {
  override readonly name = 'InfluxError';
  readonly status: number | undefined;
  /** False when sending the same request again cannot succeed (a field type conflict, a malformed point). */
  readonly retriable: boolean;
  readonly type: InfluxFailure;
  constructor(message: string, status: number | undefined, retriable: boolean, type: InfluxFailure, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.retriable = retriable;
    this.type = type;
  }
}

/** An item InfluxDB refused for good, with its reason. */
export interface RefusedPoint<T> {
  readonly item: T;
  readonly line: string;
  readonly reason: string;
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
  private readonly username: string | undefined;
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
      this.username = options.username;
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
    await this.request('POST', `CREATE DATABASE ${quoteIdentifier(this.database)}`);
    this.databaseReady = true;
  }

  /** The databases this user may read or write (InfluxDB lists only those to a user who is not an admin). */
  async databases(): Promise<string[]> {
    return (await this.query('SHOW DATABASES'))[0]?.values.map((row) => String(row[0])) ?? [];
  }

  /**
   * Makes sure the database exists: creates it, or, when the user may not create databases (a user
   * with rights on this database only, as the influxdb image creates INFLUXDB_USER), checks that it
   * is there. Fails (retriably) with a message that says what to do when neither works.
   */
  async ensureDatabase(): Promise<'created' | 'exists'> {
    try {
      await this.createDatabase();
      return 'created';
    } catch (error) {
      if (!(error instanceof InfluxError) || error.status !== 403) throw error;
      if ((await this.databases()).includes(this.database)) {
        this.databaseReady = true;
        return 'exists';
      }
      throw new InfluxError(
        `InfluxDB database ${this.database} does not exist, or user ${this.username ?? '(none)'} has no rights on it, and that user may not create it ` +
          `(InfluxDB answered: ${error.message}). Create it as an admin (CREATE DATABASE "${this.database}", then GRANT ALL ON "${this.database}" TO "${this.username ?? ''}"), ` +
          'or set INFLUX_USERNAME to a user that may',
        403,
        true,
        'INFLUX_DATABASE_MISSING',
      );
    }
  }

  /** Writes line-protocol lines with nanosecond timestamps. Makes sure the database exists first. */
  async write(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    if (!this.databaseReady) await this.ensureDatabase();
    const text = Buffer.from(lines.join('\n'));
    const body = this.gzipLevel > 0 ? await gzip(text, { level: this.gzipLevel }) : text;
    const headers: Record<string, string> = { ...this.headers, 'content-type': 'text/plain; charset=utf-8' };
    if (this.gzipLevel > 0) headers['content-encoding'] = 'gzip';
    const url = `${this.base}/write?db=${encodeURIComponent(this.database)}&precision=ns`;
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new InfluxError(`InfluxDB at ${this.base} is unreachable: ${(error as Error).message}`, undefined, true, 'INFLUX_UNREACHABLE', { cause: error });
    }
    if (res.status === 204 || res.status === 200) return;
    const detail = serverMessage(await res.text().catch(() => ''));
    if (res.status === 404 && detail.includes('database not found')) {
      this.databaseReady = false;
      throw new InfluxError(`InfluxDB database ${this.database} is missing: ${detail}`, res.status, true, 'INFLUX_DATABASE_MISSING');
    }
    // Refused for good: this request cannot succeed as it is, though a smaller one may (see writeEach).
    if (res.status === 400 || res.status === 413) throw new InfluxError(`InfluxDB refused the write (HTTP ${res.status}): ${detail}`, res.status, false, 'INFLUX_REFUSED');
    throw this.failure('write', res.status, detail);
  }

  /**
   * Writes the items' points; when InfluxDB refuses a batch for good (HTTP 400: a field type
   * conflict, a malformed point), the batch is split in halves until each refused point stands
   * alone, so that one bad point never costs the others. Returns the refused points with InfluxDB's
   * reason. InfluxDB writes the acceptable points of a refused batch anyway; sending them again
   * overwrites them with themselves (a point's series and time are its identity).
   */
  async writeEach<T>(items: readonly T[], lineOf: (item: T) => string): Promise<RefusedPoint<T>[]> {
    const lines = items.map(lineOf);
    const refused: RefusedPoint<T>[] = [];
    const writeRange = async (from: number, to: number): Promise<void> => {
      try {
        await this.write(from === 0 && to === lines.length ? lines : lines.slice(from, to));
      } catch (error) {
        if (!(error instanceof InfluxError) || error.retriable) throw error;
        if (to - from === 1) {
          refused.push({ item: items[from]!, line: lines[from]!, reason: error.message });
          return;
        }
        const middle = from + Math.ceil((to - from) / 2);
        await writeRange(from, middle);
        await writeRange(middle, to);
      }
    };
    if (lines.length > 0) await writeRange(0, lines.length);
    return refused;
  }

  /**
   * Runs InfluxQL and returns the series of the first statement (empty when it has no rows). Times
   * are epoch nanoseconds (as JSON numbers, so only to about a quarter microsecond), or with
   * `rfc3339` exact strings.
   */
  async query(influxql: string, times: 'ns' | 'rfc3339' = 'ns'): Promise<InfluxSeries[]> {
    const response = await this.request('GET', influxql, times);
    const first = response.results?.[0];
    if (first?.error !== undefined) throw new InfluxError(`InfluxQL error: ${first.error} (query: ${influxql})`, 200, false, 'INFLUX_REFUSED');
    return first?.series ?? [];
  }

  /** Runs a statement that changes something (CREATE, GRANT, DROP ...): sent with POST, as InfluxDB wants. */
  async execute(influxql: string): Promise<void> {
    const first = (await this.request('POST', influxql)).results?.[0];
    if (first?.error !== undefined) throw new InfluxError(`InfluxQL error: ${first.error} (statement: ${influxql})`, 200, false, 'INFLUX_REFUSED');
  }

  private failure(what: string, status: number, detail: string): InfluxError {
    if (status === 401) {
      return new InfluxError(
        `InfluxDB refused the credentials of user ${this.username ?? '(none: INFLUX_USERNAME is unset)'} for ${what} (HTTP 401: ${detail}): check INFLUX_USERNAME and INFLUX_PASSWORD`,
        status,
        true,
        'INFLUX_UNAUTHORIZED',
      );
    }
    if (status === 403) {
      const action = what === 'write' ? 'write to' : 'run this statement on';
      return new InfluxError(`InfluxDB user ${this.username ?? '(none)'} may not ${action} database ${this.database} (HTTP 403: ${detail})`, status, true, 'INFLUX_FORBIDDEN');
    }
    return new InfluxError(`InfluxDB ${what} failed with HTTP ${status}: ${detail}`, status, status >= 500 || status === 429 || status === 408, 'INFLUX_SERVER_ERROR');
  }

  private async request(method: 'GET' | 'POST', influxql: string, times: 'ns' | 'rfc3339' = 'ns'): Promise<QueryResponse> {
    const params = new URLSearchParams({ q: influxql, db: this.database, ...(times === 'ns' ? { epoch: 'ns' } : {}) });
    let res: Response;
    try {
      res = await fetch(`${this.base}/query?${params}`, { method, headers: this.headers, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      throw new InfluxError(`InfluxDB at ${this.base} is unreachable: ${(error as Error).message}`, undefined, true, 'INFLUX_UNREACHABLE', { cause: error });
    }
    const text = await res.text();
    if (!res.ok) throw this.failure('query', res.status, serverMessage(text));
    const parsed = JSON.parse(text) as QueryResponse;
    if (parsed.error !== undefined) throw new InfluxError(`InfluxDB: ${parsed.error}`, res.status, false, 'INFLUX_REFUSED');
    return parsed;
  }
}

/** An InfluxQL identifier in double quotes. */
export const quoteIdentifier = (name: string): string => `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** InfluxDB's error text from a response body ({"error": "..."}), else the body itself, cut short. */
function serverMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error.slice(0, 1_000);
  } catch {
    // not JSON
  }
  return body.slice(0, 1_000);
}
