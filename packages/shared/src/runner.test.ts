import { describe, expect, it } from 'vitest';
import { produceChunks, takeUpTo, type ProducedRecord } from './runner.ts';

const record = (topic: string, value: string): ProducedRecord => ({ topic, key: 'K', value });

describe('produceChunks', () => {
  it('keeps a small batch in one chunk grouped by topic, in order', () => {
    expect(produceChunks([record('a', '1'), record('b', '2'), record('a', '3')])).toEqual([
      [
        { topic: 'a', messages: [{ key: 'K', value: '1' }, { key: 'K', value: '3' }] },
        { topic: 'b', messages: [{ key: 'K', value: '2' }] },
      ],
    ]);
  });

  it('cuts a batch larger than the limit into chunks below it, losing nothing', () => {
    const outputs = Array.from({ length: 10 }, (_, i) => record('a', String(i).padStart(100, '0')));
    const chunks = produceChunks(outputs, 400);
    expect(chunks.map((c) => c[0]!.messages.length)).toEqual([2, 2, 2, 2, 2]);
    expect(chunks.flatMap((c) => c[0]!.messages.map((m) => m.value))).toEqual(outputs.map((o) => o.value));
  });

  it('puts a single record above the limit in a chunk of its own', () => {
    expect(produceChunks([record('a', 'x'.repeat(1000))], 100)).toHaveLength(1);
  });
});

describe('takeUpTo (records per transaction)', () => {
  // Offsets with gaps, as transaction markers leave them.
  const batch = (name: string, offsets: number[]) => ({
    name,
    records: offsets.map((o) => ({ offset: String(o) })),
    fetchedOffset: String(offsets[0]),
    nextOffset: String(offsets[offsets.length - 1]! + 1),
  });
  const shape = (bs: { name: string; records: { offset: string }[]; fetchedOffset: string; nextOffset: string }[]) =>
    bs.map((b) => `${b.name}:${b.records.map((r) => r.offset).join(',')} from ${b.fetchedOffset} next ${b.nextOffset}`);

  it('takes whole batches while they fit, and everything when all do', () => {
    const pending = [batch('a', [0, 1]), batch('b', [5, 6, 7])];
    expect(shape(takeUpTo(pending, 5).taken)).toEqual(['a:0,1 from 0 next 2', 'b:5,6,7 from 5 next 8']);
    expect(takeUpTo(pending, 5).rest).toEqual([]);
  });

  it('splits the batch that crosses the limit: its head commits after its last record, its tail is fetched from its first', () => {
    const { taken, rest } = takeUpTo([batch('a', [0, 1]), batch('b', [5, 6, 9, 10]), batch('c', [20])], 4);
    expect(shape(taken)).toEqual(['a:0,1 from 0 next 2', 'b:5,6 from 5 next 7']);
    expect(shape(rest)).toEqual(['b:9,10 from 9 next 11', 'c:20 from 20 next 21']);
  });

  it('stops at a batch boundary when the limit falls on one, and takes part of a first batch larger than the limit', () => {
    expect(shape(takeUpTo([batch('a', [0, 1]), batch('b', [2, 3])], 2).taken)).toEqual(['a:0,1 from 0 next 2']);
    const { taken, rest } = takeUpTo([batch('a', [0, 1, 2, 3, 4])], 2);
    expect(shape(taken)).toEqual(['a:0,1 from 0 next 2']);
    expect(shape(rest)).toEqual(['a:2,3,4 from 2 next 5']);
  });
});
