import { describe, expect, it } from 'vitest';
import { KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import type { RunnerOptions } from './options.ts';
import { errorTypes, FENCED, isAny, REBALANCING, retrying, Stopped, withTimeout, type RetryContext } from './retry.ts';

const protocolError = (type: string, code: number) => new KafkaJSProtocolError({ message: type, type, code, retriable: false } as never);

describe('errorTypes', () => {
  it('finds the Kafka error codes through the causes kafkajs wraps them in', () => {
    const inner = protocolError('PRODUCER_FENCED', 90);
    // A retrier that gave up keeps the last error as originalError; a wrapper, as its cause.
    const wrapped = new (KafkaJSNonRetriableError as unknown as new (m: string, o: { cause: Error }) => Error)('sending failed', { cause: new KafkaJSNumberOfRetriesExceeded(inner, { retryCount: 5, retryTime: 100 }) });
    expect([...errorTypes(wrapped)]).toContain('PRODUCER_FENCED');
    expect(isAny(wrapped, FENCED)).toBe(true);
    expect(isAny(wrapped, REBALANCING)).toBe(false);
  });

  it('tells a rebalance from a fenced producer', () => {
    expect(isAny(protocolError('ILLEGAL_GENERATION', 22), REBALANCING)).toBe(true);
    expect(isAny(protocolError('ILLEGAL_GENERATION', 22), FENCED)).toBe(false);
  });

  it('has no codes for errors that are not from Kafka, and stops on a cycle of causes', () => {
    expect(errorTypes(new Error('x')).size).toBe(0);
    expect(errorTypes(undefined).size).toBe(0);
    const a: { type: string; cause?: unknown } = { type: 'A' };
    const b = { type: 'B', cause: a };
    a.cause = b;
    expect([...errorTypes(a)].sort()).toEqual(['A', 'B']);
  });
});

describe('withTimeout', () => {
  it('passes a result through', async () => {
    await expect(withTimeout('x', Promise.resolve(3), 1_000)).resolves.toBe(3);
  });

  it('turns a call that never settles into an error naming it', async () => {
    await expect(withTimeout('reading committed offsets', new Promise(() => undefined), 10)).rejects.toThrow('reading committed offsets took longer than 10 ms');
  });
});

describe('retrying: one log per outage across lanes', () => {
  /** Runner options with a logger that keeps what it writes at warn and info. */
  function optionsLogging() {
    const lines: { level: string; msg: string }[] = [];
    const at = (level: string) => (_fields: unknown, msg: string) => lines.push({ level, msg });
    const logger = { warn: at('warn'), info: at('info'), debug: at('debug'), error: at('error') };
    const metrics = { retries: 0, healthy: true };
    return { options: { logger, metrics, retryMaxMs: 20 } as unknown as RunnerOptions, lines, metrics };
  }
  const context = (partition: number): RetryContext => ({
    source: { topic: 'prices', partition },
    lane: { revoked: false },
    control: { isRunning: () => true, isStale: () => false, heartbeat: async () => undefined },
  });
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8086'), { code: 'ECONNREFUSED' });

  it('a lane that never failed succeeding mid-outage (its write was in flight) neither ends the outage nor starts a second one', async () => {
    const { options, lines, metrics } = optionsLogging();
    let down = true;
    let aFailures = 0;
    // Lane A fails until the outage ends; lane B's one write succeeds while A is failing.
    const a = retrying('write', context(0), options, () => false, async () => {
      if (down) {
        aFailures++;
        throw refused();
      }
    });
    while (aFailures < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    await retrying('write', context(1), options, () => false, async () => undefined);
    while (aFailures < 4) await new Promise((resolve) => setTimeout(resolve, 1));
    down = false;
    await a;
    const said = (level: string) => lines.filter((l) => l.level === level && l.msg.startsWith('write (nothing is committed until it succeeds)'));
    expect(said('warn')).toHaveLength(1);
    expect(said('warn')[0]!.msg).toContain('failed (ECONNREFUSED)');
    expect(said('info')).toHaveLength(1);
    expect(said('info')[0]!.msg).toContain('succeeded after retrying');
    expect(metrics.retries).toBe(aFailures);
    expect(metrics.healthy).toBe(true);
  });

  it('the recovery is logged when the last failing lane succeeds, once', async () => {
    const { options, lines } = optionsLogging();
    let down = true;
    const failures = [0, 0];
    const lanes = [0, 1].map((p) =>
      retrying('write', context(p), options, () => false, async () => {
        if (down || (p === 1 && failures[1]! < 6)) {
          failures[p]!++;
          throw refused();
        }
      }),
    );
    while (failures[0]! < 2 || failures[1]! < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    down = false;
    await lanes[0];
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(0);
    await lanes[1];
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(1);
  });

  it('a lane given up while failing ends the outage without a recovery; the next outage is logged again', async () => {
    const { options, lines } = optionsLogging();
    let stopping = false;
    let failures = 0;
    const given = retrying('write', context(0), options, () => stopping, async () => {
      failures++;
      throw refused();
    });
    while (failures < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    stopping = true;
    await expect(given).rejects.toBeInstanceOf(Stopped);
    let again = 0;
    await retrying('write', context(0), options, () => false, async () => {
      if (again++ === 0) throw refused();
    });
    expect(lines.filter((l) => l.level === 'warn')).toHaveLength(2);
    expect(lines.filter((l) => l.level === 'info')).toHaveLength(1);
  });
});
