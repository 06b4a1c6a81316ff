/**
 * kafkajs 2.2.4 entered at most one aborted transaction per record, so when several transactional
 * producers write one partition (one per input partition here) records of aborted transactions
 * reached read_committed consumers as duplicates. patches/kafkajs@2.2.4.patch fixes that; this
 * test pins the fix.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
type Message = { offset: string; key: Buffer | null; batchContext: { producerId: string; inTransaction: boolean }; isControlRecord?: boolean };
const filterAbortedMessages = require('kafkajs/src/consumer/filterAbortedMessages') as (args: {
  messages: Message[];
  abortedTransactions: { producerId: string; firstOffset: string }[];
}) => Message[];

const ABORT = Buffer.from([0, 0, 0, 0]);
const data = (offset: number, producerId: string): Message => ({ offset: String(offset), key: Buffer.from('k'), batchContext: { producerId, inTransaction: true } });
const abortMarker = (offset: number, producerId: string): Message => ({ offset: String(offset), key: ABORT, isControlRecord: true, batchContext: { producerId, inTransaction: true } });

describe('kafkajs aborted-transaction filter (patched)', () => {
  it('drops records of every aborted transaction that started before the fetched range, not just the first', () => {
    const kept = filterAbortedMessages({
      messages: [data(10, '2'), data(11, '1'), abortMarker(12, '2'), abortMarker(13, '1'), data(14, '3')],
      abortedTransactions: [
        { producerId: '1', firstOffset: '3' },
        { producerId: '2', firstOffset: '5' },
      ],
    });
    expect(kept.map((m) => m.offset)).toEqual(['12', '13', '14']);
  });

  it('keeps committed records interleaved with an aborted transaction', () => {
    const kept = filterAbortedMessages({
      messages: [data(0, '1'), data(1, '2'), data(2, '1'), abortMarker(3, '1'), data(4, '2')],
      abortedTransactions: [{ producerId: '1', firstOffset: '0' }],
    });
    expect(kept.map((m) => m.offset)).toEqual(['1', '3', '4']);
  });
});
