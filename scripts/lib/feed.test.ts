import { describe, expect, it } from 'vitest';
import { writtenPartitions } from './feed.ts';

describe('writtenPartitions: what a failed send wrote all the same', () => {
  it("reads the patched client's acknowledgedPartitions, of the feed's topic only", () => {
    const error = Object.assign(new Error('The broker received an out of order sequence number'), {
      acknowledgedPartitions: [
        { topic: 'orders', partition: 0 },
        { topic: 'orders', partition: 4 },
        { topic: 'ticks', partition: 1 },
      ],
    });
    expect([...writtenPartitions(error, 'orders')].sort()).toEqual([0, 4]);
  });

  it('finds them on a cause of the error (a wrapping error of the client)', () => {
    const inner = Object.assign(new Error('refused'), { acknowledgedPartitions: [{ topic: 'orders', partition: 2 }] });
    const outer = new Error('KafkaJSNonRetriableError', { cause: inner });
    expect([...writtenPartitions(outer, 'orders')]).toEqual([2]);
  });

  it('is empty when the error names none: nothing of the call was written', () => {
    expect(writtenPartitions(new Error('The producer is disconnected'), 'orders').size).toBe(0);
    expect(writtenPartitions('not an error', 'orders').size).toBe(0);
    expect(writtenPartitions(Object.assign(new Error('x'), { acknowledgedPartitions: [] }), 'orders').size).toBe(0);
  });
});
