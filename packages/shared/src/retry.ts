/**
 * Waiting out transient failures: a broker that is starting (its coordinators still loading,
 * leaders not yet elected), a connection refused or reset, InfluxDB restarting. Each kind of
 * failure is logged once per outage, saying what the service waits for; repeats go to debug, and
 * the recovery is logged with how long it took.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from './config.ts';
import type { Logger } from './logger.ts';

/** Errors that are not worth a retry: a wrong setting stays wrong. Thrown through by untilSuccess. */
export interface Permanent {
  readonly permanent: true;
}

export const isPermanent = (error: unknown): boolean =>
  typeof error === 'object' && error !== null && ((error as { permanent?: unknown }).permanent === true || (error as Error).name === 'ConfigError');

/** The error and its causes, outermost first (kafkajs wraps protocol errors in retry errors). */
function* causes(error: unknown): Generator<Record<string, unknown>> {
  let e = error as Record<string, unknown> | undefined | null;
  for (let depth = 0; typeof e === 'object' && e !== null && depth < 10; depth++) {
    yield e;
    e = (e['cause'] ?? e['originalError']) as typeof e;
  }
}

/** What the Kafka client and the lean client throw when a broker refuses their SASL login. */
const AUTHENTICATION_FAILURES = new Set(['KafkaJSSASLAuthenticationError', 'SaslError']);

/** The broker's refusal of the login, when that is what failed (asking again does not mend it). */
export function authenticationFailure(error: unknown): string | undefined {
  for (const e of causes(error)) if (typeof e['name'] === 'string' && AUTHENTICATION_FAILURES.has(e['name'])) return String(e['message']);
  return undefined;
}

const ERRNO = /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|ECONNABORTED)\b/;

/**
 * The kind of a failure: the Kafka error code (NOT_COORDINATOR, LEADER_NOT_AVAILABLE ...), else a
 * system error code (ECONNREFUSED ...), else the error's name.
 */
export function failureKind(error: unknown): string {
  for (const e of causes(error)) if (typeof e['type'] === 'string' && /^[A-Z_]+$/.test(e['type'])) return e['type'];
  for (const e of causes(error)) {
    if (typeof e['code'] === 'string' && ERRNO.test(e['code'])) return e['code'];
    const errno = typeof e['message'] === 'string' ? ERRNO.exec(e['message']) : null;
    if (errno !== null) return errno[1]!;
  }
  for (const e of causes(error)) if (e['name'] === 'KafkaJSRequestTimeoutError') return 'REQUEST_TIMED_OUT';
  const first = causes(error).next().value;
  return typeof first?.['name'] === 'string' ? first['name'] : typeof error;
}

const WAITING_FOR: Record<string, string> = {
  NOT_COORDINATOR: 'the broker to settle which of its nodes coordinates the group or transaction (a new or restarting broker)',
  COORDINATOR_LOAD_IN_PROGRESS: 'the group or transaction coordinator to finish loading its state (a new or restarting broker)',
  COORDINATOR_NOT_AVAILABLE: 'the group or transaction coordinator to come up (a new broker creates its internal topics first)',
  LEADER_NOT_AVAILABLE: 'partition leaders to be elected (topics just created, or a broker restarting)',
  NOT_LEADER_OR_FOLLOWER: 'partition leadership to settle (a broker restarting)',
  UNKNOWN_TOPIC_OR_PARTITION: 'topics to be created and known to every broker',
  NOT_ENOUGH_REPLICAS: 'enough in-sync replicas',
  REQUEST_TIMED_OUT: 'the broker to answer (busy or restarting)',
  CONCURRENT_TRANSACTIONS: 'the previous transaction to complete',
  ECONNREFUSED: 'the server to accept connections (not started yet, or restarting)',
  ECONNRESET: 'the server to come back (it closed the connection)',
  ENOTFOUND: 'its host name to resolve',
  EAI_AGAIN: 'its host name to resolve',
  ETIMEDOUT: 'the server to answer (connection timed out)',
  EHOSTUNREACH: 'the network to reach the server',
  ENETUNREACH: 'the network to reach the server',
  KafkaJSConnectionError: 'a connection to the broker',
  KafkaJSConnectionClosedError: 'the broker to come back (it closed the connection)',
  INFLUX_UNREACHABLE: 'InfluxDB to accept connections (not started yet, or restarting)',
  INFLUX_UNAUTHORIZED: 'InfluxDB to accept INFLUX_USERNAME and INFLUX_PASSWORD (wrong, or the user is not created yet)',
  INFLUX_FORBIDDEN: 'the InfluxDB user to be granted access to the database',
  INFLUX_DATABASE_MISSING: 'the InfluxDB database to be created (the user may not create it)',
  INFLUX_SERVER_ERROR: 'InfluxDB to recover from a server error',
};

/** What a service waits for when `kind` keeps it from going on. */
export const waitingFor = (kind: string): string => WAITING_FOR[kind] ?? 'the failure to clear';

/**
 * The log of one stretch of failures of one operation: the first failure of each kind at warn
 * (with what the service waits for), repeats at debug, and the recovery at info.
 */
export class RetryLog {
  private readonly kinds = new Set<string>();
  private failures = 0;
  private since = 0;
  private readonly logger: Logger;
  private readonly what: string;

  constructor(logger: Logger, what: string) {
    this.logger = logger;
    this.what = what;
  }

  get failed(): number {
    return this.failures;
  }

  failure(error: unknown, retryInMs: number, context: Record<string, unknown> = {}): void {
    if (this.failures === 0) this.since = Date.now();
    this.failures++;
    const kind = failureKind(error);
    const fields = { ...context, err: error, kind, failures: this.failures, retryInMs };
    if (this.kinds.has(kind)) {
      this.logger.debug(fields, `${this.what} failed again (${kind}); retrying`);
      return;
    }
    this.kinds.add(kind);
    this.logger.warn(fields, `${this.what} failed (${kind}): waiting for ${waitingFor(kind)}; retrying with backoff (each kind of failure is logged once)`);
  }

  /** Logs the recovery, if there was anything to recover from, and starts over. */
  recovered(context: Record<string, unknown> = {}): void {
    if (this.failures === 0) return;
    this.logger.info({ ...context, failures: this.failures, kinds: [...this.kinds], waitedMs: Date.now() - this.since }, `${this.what} succeeded after retrying`);
    this.reset();
  }

  /** Starts over without a word: whoever was failing was given up, not recovered. */
  reset(): void {
    this.failures = 0;
    this.kinds.clear();
  }
}

export interface RetryOptions {
  /** Cap of the wait between attempts. */
  readonly maxBackoffMs?: number;
  readonly initialBackoffMs?: number;
  /** Ends the waiting: the attempt's last error is thrown. */
  readonly signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, with capped exponential backoff in between, e.g. while Kafka or
 * InfluxDB is still starting. A permanent error (a ConfigError, or one marked `permanent`) is thrown at once.
 */
export async function untilSuccess<T>(what: string, logger: Logger, attempt: () => Promise<T>, options: RetryOptions | number = {}): Promise<T> {
  const { maxBackoffMs = 10_000, initialBackoffMs = 200, signal } = typeof options === 'number' ? { maxBackoffMs: options } : options;
  const log = new RetryLog(logger, what);
  let backoff = initialBackoffMs;
  for (;;) {
    try {
      const result = await attempt();
      log.recovered();
      return result;
    } catch (error) {
      if (isPermanent(error) || signal?.aborted === true) throw error;
      const refused = authenticationFailure(error);
      if (refused !== undefined) throw new ConfigError(`${what}: the broker refused the login (${refused}); check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`);
      log.failure(error, backoff);
      try {
        await sleep(backoff, undefined, signal === undefined ? undefined : { signal });
      } catch {
        throw error;
      }
      backoff = Math.min(maxBackoffMs, backoff * 2);
    }
  }
}
