/** How the runners tell the kinds of Kafka errors apart, and retry a lane's work until it succeeds or is given up. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import { RetryLog } from '../retry.ts';
import type { RunnerOptions } from './options.ts';
import type { TopicPartition } from './records.ts';

export const INITIAL_BACKOFF_MS = 100;

/** The lane's work was given up uncommitted (stopping, or its partitions moved): it is fetched again. */
export class Stopped extends Error {}

/** Rejects when `promise` takes longer than `ms`, so a stuck call becomes a retried failure. */
export async function withTimeout<T>(what: string, promise: Promise<T>, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The Kafka error codes in an error or its causes (kafkajs wraps protocol errors), up to 10 levels deep. */
export function errorTypes(error: unknown): Set<string> {
  const types = new Set<string>();
  let e = error as { type?: string; cause?: unknown; originalError?: unknown } | undefined;
  // Bounded by depth, not by the codes found: causes can form a cycle.
  for (let depth = 0; depth < 10 && e !== undefined && e !== null; depth++, e = (e.cause ?? e.originalError) as typeof e) {
    if (typeof e.type === 'string') types.add(e.type);
  }
  return types;
}

/** Another producer with our transactional id took over: the partition has a new owner. */
export const FENCED = ['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING'];
/** The group is rebalancing or has moved on without us: give the batch up so the consumer can rejoin. */
export const REBALANCING = ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID'];
export const isAny = (error: unknown, codes: readonly string[]) => [...errorTypes(error)].some((t) => codes.includes(t));

/** What `retrying` needs of a lane's batch: where it is from, and whether it may still be committed. */
export interface RetryContext {
  readonly source: TopicPartition;
  readonly lane: { readonly revoked: boolean };
  readonly control: { isRunning(): boolean; isStale(): boolean; heartbeat(): Promise<void> };
}

/**
 * One log per runner and operation, shared by its lanes, so an outage is logged once, not once per
 * partition: the recovery is logged when the last lane that failed succeeds. A lane that never
 * failed succeeding says nothing (its write may have been in flight as the outage began, while
 * another lane's already failed), and a lane given up while failing leaves the outage to the rest.
 */
export class OutageLog {
  private readonly failing = new Set<object>();
  private readonly log: RetryLog;

  constructor(logger: Logger, what: string) {
    this.log = new RetryLog(logger, what);
  }

  get failed(): number {
    return this.log.failed;
  }

  failure(lane: object, error: unknown, retryInMs: number, context: Record<string, unknown>): void {
    this.failing.add(lane);
    this.log.failure(error, retryInMs, context);
  }

  /** `lane` is done: it succeeded, or was given up. Returns whether this ended the outage. */
  leave(lane: object, succeeded: boolean, context: Record<string, unknown>): boolean {
    if (!this.failing.delete(lane) || this.failing.size > 0) return false;
    if (succeeded) this.log.recovered(context);
    else this.log.reset();
    return true;
  }
}

const retryLogs = new WeakMap<RunnerOptions, Map<string, OutageLog>>();

function retryLogOf(options: RunnerOptions, what: string): OutageLog {
  let logs = retryLogs.get(options);
  if (logs === undefined) retryLogs.set(options, (logs = new Map()));
  let log = logs.get(what);
  if (log === undefined) logs.set(what, (log = new OutageLog(options.logger, `${what} (nothing is committed until it succeeds)`)));
  return log;
}

/** Runs `attempt` until it succeeds, the partition is taken away, or the runner stops. */
export async function retrying(
  what: string,
  ctx: RetryContext,
  options: RunnerOptions,
  isStopping: () => boolean,
  attempt: () => Promise<void>,
): Promise<void> {
  const cap = options.retryMaxMs ?? 10_000;
  const log = retryLogOf(options, what);
  const lane = {};
  let succeeded = false;
  try {
    let backoff = INITIAL_BACKOFF_MS;
    for (;;) {
      if (isStopping() || ctx.lane.revoked || !ctx.control.isRunning() || ctx.control.isStale()) throw new Stopped();
      try {
        await attempt();
        succeeded = true;
        return;
      } catch (error) {
        if (error instanceof Stopped) throw error;
        if (isAny(error, FENCED) || isAny(error, REBALANCING)) {
          // Retrying would fence the partition's new owner in turn; leave the batch uncommitted to it.
          options.logger.warn({ ...ctx.source, err: error }, `${what} abandoned: the partition moved to another member`);
          throw new Stopped();
        }
        options.metrics.retries++;
        log.failure(lane, error, backoff, { ...ctx.source });
        if (log.failed > 3) options.metrics.healthy = false;
        const until = Date.now() + backoff;
        while (Date.now() < until && !isStopping()) {
          await sleep(Math.min(250, until - Date.now()));
          try {
            await ctx.control.heartbeat();
          } catch (heartbeatError) {
            if (isAny(heartbeatError, REBALANCING)) throw new Stopped();
          }
        }
        backoff = Math.min(cap, backoff * 2);
      }
    }
  } finally {
    if (log.leave(lane, succeeded, { ...ctx.source })) options.metrics.healthy = true;
  }
}
