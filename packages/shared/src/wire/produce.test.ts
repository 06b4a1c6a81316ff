import { describe, expect, it } from 'vitest';
import { Reader } from './connection.ts';
import { crc32c } from './crc32c.ts';
import { encodeBatch, murmur2, parseProduce, produceRequest, RecordSizes, type BatchHeader, type BatchOf, type OutgoingRecord } from './produce.ts';
import { readHeaders, visitCommittedRecords } from './record-batches.ts';

/** One partition's records for a request, and its batch header. */
interface PartitionBatch extends BatchOf {
  readonly partition: number;
  readonly header: BatchHeader;
}

/** The batches of a Produce request (v7) as the broker would read them: per topic and partition, the batch bytes. */
function batchesOf(request: Buffer): { transactionalId: string | null; acks: number; timeoutMs: number; batches: Map<string, Buffer> } {
  const r = new Reader(request);
  const transactionalId = r.string();
  const acks = r.int16();
  const timeoutMs = r.int32();
  const batches = new Map<string, Buffer>();
  r.array((r) => {
    const topic = r.string()!;
    r.array((r) => {
      const partition = r.int32();
      batches.set(`${topic}-${partition}`, r.bytes()!);
    });
  });
  expect(r.at).toBe(request.length);
  return { transactionalId, acks, timeoutMs, batches };
}

interface Decoded {
  offset: number;
  key: string | null;
  value: string | null;
  timestamp: number;
  headers: Record<string, string>;
}

function decode(batch: Buffer): Decoded[] {
  const out: Decoded[] = [];
  visitCommittedRecords(batch, [], 0, (offset, data, ks, kl, vs, vl, timestamp, headersAt) => {
    const headers = Object.fromEntries(Object.entries(readHeaders(data, headersAt)).map(([k, v]) => [k, String(v)]));
    out.push({ offset, key: kl < 0 ? null : data.toString('utf8', ks, ks + kl), value: vl < 0 ? null : data.toString('utf8', vs, vs + vl), timestamp, headers });
  });
  return out;
}

const header = { producerId: 4_000_000_123n, producerEpoch: 7, baseSequence: 42, transactional: true, timestamp: 1_765_000_000_123 };

describe('crc32c', () => {
  it('gives the check value of the Castagnoli polynomial and agrees with a bitwise computation', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    const bitwise = (data: Buffer) => {
      let c = -1;
      for (const byte of data) {
        c ^= byte;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      }
      return (c ^ -1) >>> 0;
    };
    for (let length = 0; length < 70; length++) {
      const data = Buffer.from(Array.from({ length }, (_, i) => (i * 37 + length) & 0xff));
      expect(crc32c(data)).toBe(bitwise(data));
      expect(crc32c(Buffer.concat([Buffer.from('xy'), data, Buffer.from('z')]), 2, 2 + length)).toBe(bitwise(data));
    }
  });
});

describe('murmur2', () => {
  // Utils.murmur2 of Kafka's Java client on these UTF-8 keys.
  it.each([
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ])('hashes %s as the Java client does', (key, expected) => {
    expect(murmur2(Buffer.from(key))).toBe(expected);
  });
});

/** A request of batches given by their records, each encoded first as the producer does. */
function requestOf(transactionalId: string | null, timeoutMs: number, topics: Map<string, PartitionBatch[]>, sizes = new RecordSizes()): Buffer {
  return produceRequest(transactionalId, timeoutMs, new Map([...topics].map(([topic, batches]) => [topic, batches.map((b) => ({ partition: b.partition, bytes: encodeBatch(b, b.header, sizes) }))])));
}

describe('produceRequest', () => {
  it('encodes records, keys, values, nulls and headers that decode back exactly, with a valid CRC', () => {
    const records: OutgoingRecord[] = [
      { key: 'AAPL', value: '{"a":1}' },
      { key: null, value: 'no key' },
      { key: Buffer.from([0, 1, 2]), value: null },
      { key: 'é€', value: 'ünïcödé €', headers: { 'tradeflow-applied': 'order-matcher', other: Buffer.from('bytes') } },
      ...Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: 'v'.repeat(i) })),
    ];
    const batches: PartitionBatch[] = [
      { partition: 3, records, start: 0, end: 2, header },
      { partition: 5, records, start: 2, end: records.length, header: { ...header, baseSequence: 0, transactional: false } },
    ];
    const request = requestOf('txn-1', 30_000, new Map([['orders', batches]]));
    const { transactionalId, acks, timeoutMs, batches: bytes } = batchesOf(request);
    expect({ transactionalId, acks, timeoutMs }).toEqual({ transactionalId: 'txn-1', acks: -1, timeoutMs: 30_000 });

    const first = bytes.get('orders-3')!;
    expect(decode(first)).toEqual([
      { offset: 0, key: 'AAPL', value: '{"a":1}', timestamp: header.timestamp, headers: {} },
      { offset: 1, key: null, value: 'no key', timestamp: header.timestamp, headers: {} },
    ]);
    const second = decode(bytes.get('orders-5')!);
    expect(second).toHaveLength(records.length - 2);
    expect(second[0]).toEqual({ offset: 0, key: '\u0000\u0001\u0002', value: null, timestamp: header.timestamp, headers: {} });
    expect(second[1]).toEqual({ offset: 1, key: 'é€', value: 'ünïcödé €', timestamp: header.timestamp, headers: { 'tradeflow-applied': 'order-matcher', other: 'bytes' } });
    expect(second.slice(2).map((d) => d.value)).toEqual(records.slice(4).map((r) => r.value));
    expect(second.map((d) => d.offset)).toEqual(second.map((_, i) => i));

    // The batch header as the broker checks it.
    expect(first.readBigInt64BE(0)).toBe(0n);
    expect(first.readInt32BE(8)).toBe(first.length - 12);
    expect(first.readInt32BE(12)).toBe(-1);
    expect(first.readInt8(16)).toBe(2);
    expect(first.readUInt32BE(17)).toBe(crc32c(first, 21));
    expect(first.readInt16BE(21)).toBe(0x10); // transactional
    expect(first.readInt32BE(23)).toBe(1); // last offset delta
    expect(first.readBigInt64BE(27)).toBe(BigInt(header.timestamp));
    expect(first.readBigInt64BE(35)).toBe(BigInt(header.timestamp));
    expect(first.readBigInt64BE(43)).toBe(header.producerId);
    expect(first.readInt16BE(51)).toBe(7);
    expect(first.readInt32BE(53)).toBe(42);
    expect(first.readInt32BE(57)).toBe(2);
    const secondBatch = bytes.get('orders-5')!;
    expect(secondBatch.readInt16BE(21)).toBe(0);
    expect(secondBatch.readUInt32BE(17)).toBe(crc32c(secondBatch, 21));
  });

  it('encodes a batch on its own (encodeBatch) the same whatever was encoded with the same sizes before', () => {
    const records: OutgoingRecord[] = Array.from({ length: 500 }, (_, i) => ({ key: `k${i}`, value: `{"n":${i},"é":"€"}`, ...(i % 7 === 0 ? { headers: { 'tradeflow-applied': 'order-matcher' } } : {}) }));
    const batch: PartitionBatch = { partition: 4, records, start: 120, end: 500, header: { ...header, baseSequence: 120 } };
    const sizes = new RecordSizes();
    const alone = encodeBatch(batch, batch.header, new RecordSizes());
    encodeBatch({ records, start: 0, end: 120 }, header, sizes);
    expect(encodeBatch(batch, batch.header, sizes).equals(alone)).toBe(true);
    expect(decode(alone).map((d) => d.value)).toEqual(records.slice(120).map((r) => r.value));
    expect(alone.readInt32BE(53)).toBe(120); // base sequence
  });

  it('writes several topics and a null transactional id, reusing its sizes from request to request', () => {
    const sizes = new RecordSizes();
    for (let round = 0; round < 3; round++) {
      const records: OutgoingRecord[] = Array.from({ length: 2_000 + round * 1_000 }, (_, i) => ({ key: String(i), value: `{"n":${i},"round":${round}}` }));
      const request = requestOf(
        null,
        1_000,
        new Map([
          ['a', [{ partition: 0, records, start: 0, end: 1_000, header }]],
          ['b', [{ partition: 1, records, start: 1_000, end: records.length, header }]],
        ]),
        sizes,
      );
      const { transactionalId, batches } = batchesOf(request);
      expect(transactionalId).toBeNull();
      expect(decode(batches.get('a-0')!).map((d) => d.value)).toEqual(records.slice(0, 1_000).map((r) => r.value));
      expect(decode(batches.get('b-1')!).map((d) => d.value)).toEqual(records.slice(1_000).map((r) => r.value));
    }
  });
});

describe('parseProduce', () => {
  it('reads each partition outcome of a v7 response', () => {
    const body = Buffer.alloc(4 + 2 + 3 + 4 + 2 * (4 + 2 + 8 + 8 + 8) + 4);
    let at = body.writeInt32BE(1, 0);
    at = body.writeInt16BE(3, at);
    at += body.write('abc', at);
    at = body.writeInt32BE(2, at);
    for (const [partition, error, offset] of [[0, 0, 17n], [4, 47, -1n]] as const) {
      at = body.writeInt32BE(partition, at);
      at = body.writeInt16BE(error, at);
      at = body.writeBigInt64BE(offset, at);
      at = body.writeBigInt64BE(-1n, at);
      at = body.writeBigInt64BE(0n, at);
    }
    body.writeInt32BE(0, at);
    expect(parseProduce(body)).toEqual([
      { topic: 'abc', partition: 0, error: 0, baseOffset: 17n },
      { topic: 'abc', partition: 4, error: 47, baseOffset: -1n },
    ]);
  });
});
