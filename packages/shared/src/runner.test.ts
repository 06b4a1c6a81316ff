import { describe, expect, it } from 'vitest';
import { produceChunks, type ProducedRecord } from './runner.ts';

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
