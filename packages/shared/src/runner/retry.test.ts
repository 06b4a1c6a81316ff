import { describe, expect, it } from 'vitest';
import { KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { errorTypes, FENCED, isAny, REBALANCING, withTimeout } from './retry.ts';

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
