import { Writable } from 'node:stream';
import { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError } from './config.ts';
import { failureKind, untilSuccess, waitingFor } from './retry.ts';
import { SaslError } from './wire/sasl.ts';

/** A logger that keeps what it writes, as parsed lines. */
function capturingLogger() {
  const lines: { level: number; msg: string; kind?: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

const protocolError = (type: string) => new KafkaJSProtocolError(Object.assign(new Error(`The broker answered ${type}`), { type, code: 16, retriable: true }));

describe('failureKind', () => {
  it('finds the Kafka error code inside kafkajs retry errors', () => {
    const exhausted = new KafkaJSNumberOfRetriesExceeded(protocolError('NOT_COORDINATOR'), { retryCount: 5, retryTime: 1000 });
    expect(failureKind(exhausted)).toBe('NOT_COORDINATOR');
    expect(failureKind(protocolError('COORDINATOR_LOAD_IN_PROGRESS'))).toBe('COORDINATOR_LOAD_IN_PROGRESS');
  });

  it('names refused and reset connections by their system error code', () => {
    expect(failureKind(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { broker: '127.0.0.1:9092', code: 'ECONNREFUSED' }))).toBe('ECONNREFUSED');
    expect(failureKind(new TypeError('fetch failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }))).toBe('ECONNRESET');
    expect(failureKind(new Error('something else'))).toBe('Error');
  });

  it('says what a service waits for', () => {
    expect(waitingFor('COORDINATOR_LOAD_IN_PROGRESS')).toMatch(/coordinator to finish loading/);
    expect(waitingFor('ECONNREFUSED')).toMatch(/accept connections/);
    expect(waitingFor('SOMETHING_NEW')).toBe('the failure to clear');
  });
});

describe('untilSuccess', () => {
  it('retries transient failures, logging each kind once at warn and the recovery at info', async () => {
    const { logger, lines } = capturingLogger();
    const failures = [protocolError('NOT_COORDINATOR'), protocolError('NOT_COORDINATOR'), protocolError('COORDINATOR_LOAD_IN_PROGRESS'), protocolError('NOT_COORDINATOR')];
    let calls = 0;
    const result = await untilSuccess('reading offsets', logger, async () => {
      const failure = failures[calls++];
      if (failure !== undefined) throw failure;
      return 'done';
    }, { initialBackoffMs: 1, maxBackoffMs: 2 });
    expect(result).toBe('done');
    expect(calls).toBe(5);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings.map((l) => l.kind)).toEqual(['NOT_COORDINATOR', 'COORDINATOR_LOAD_IN_PROGRESS']);
    expect(warnings[0]!.msg).toContain('waiting for the broker to settle which of its nodes coordinates');
    expect(lines.filter((l) => l.level === 20)).toHaveLength(2);
    const recovered = lines.filter((l) => l.level === 30);
    expect(recovered).toHaveLength(1);
    expect(recovered[0]!.msg).toBe('reading offsets succeeded after retrying');
  });

  it('throws a configuration error at once', async () => {
    const { logger, lines } = capturingLogger();
    let calls = 0;
    await expect(
      untilSuccess('creating topics', logger, async () => {
        calls++;
        throw new ConfigError('topics co-partitioned by symbol must have equal partition counts');
      }),
    ).rejects.toThrow(ConfigError);
    expect(calls).toBe(1);
    expect(lines).toHaveLength(0);
  });

  it("stops at once when the broker refuses the login, naming the settings (the Kafka client's error and the lean client's)", async () => {
    const { logger, lines } = capturingLogger();
    for (const refusal of [
      Object.assign(new Error('SASL SCRAM SHA256 authentication failed: invalid credentials'), { name: 'KafkaJSSASLAuthenticationError' }),
      new Error('reading offsets', { cause: new SaslError('127.0.0.1:9094: SASL PLAIN authentication of "u" failed: invalid credentials') }),
    ]) {
      let calls = 0;
      const failed = await untilSuccess('joining Kafka', logger, async () => {
        calls++;
        throw refusal;
      }).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(ConfigError);
      expect((failed as Error).message).toBe(
        `joining Kafka: the broker refused the login (${(refusal.cause as Error | undefined)?.message ?? refusal.message}); check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`,
      );
      expect(calls).toBe(1);
    }
    expect(lines).toHaveLength(0);
  });

  it('gives up with the last error when its signal is aborted', async () => {
    const { logger } = capturingLogger();
    const controller = new AbortController();
    const attempt = untilSuccess('connecting', logger, async () => {
      throw protocolError('LEADER_NOT_AVAILABLE');
    }, { initialBackoffMs: 10_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 10);
    await expect(attempt).rejects.toThrow('The broker answered LEADER_NOT_AVAILABLE');
  });
});
