import { describe, expect, it } from 'vitest';
import { defaultPartitioner } from '../kafka.ts';
import { partitionFor, produceChunks, type ProducedRecord } from './records.ts';

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

describe('partitionFor', () => {
  // Expected values from Kafka's own Java client: Utils.toPositive(Utils.murmur2(key)) % count.
  it.each([
    ['AAPL', 6, 3],
    ['MSFT', 6, 0],
    ['1000042', 6, 0],
    ['7', 6, 3],
    ['AAPL', 12, 9],
    ['MSFT', 12, 6],
    ['7', 12, 3],
  ])('puts key %s of %i partitions where the Java client does', (key, count, expected) => {
    expect(partitionFor({ topic: 't', key, value: 'v' }, count)).toBe(expected);
    expect(partitionFor({ topic: 't', key: Buffer.from(key), value: null }, count)).toBe(expected);
  });

  it("agrees with the Kafka client's partitioner on random keys of every length and UTF-8 text", () => {
    const kafkajs = defaultPartitioner();
    const partitionMetadata = Array.from({ length: 7 }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
    let seed = 42;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 256)));
      const text = `${i}-é€-${bytes.toString('hex').slice(0, i % 13)}`;
      for (const key of [bytes, text]) {
        expect(partitionFor({ topic: 't', key, value: null }, 7)).toBe(kafkajs({ topic: 't', partitionMetadata, message: { key, value: null } }));
      }
    }
  });

  it('keeps an explicit partition', () => {
    expect(partitionFor({ topic: 't', key: 'AAPL', value: 'v', partition: 5 }, 6)).toBe(5);
  });
});
