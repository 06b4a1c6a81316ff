import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { anyCompressed, completeBatches, readHeaders, RecordBatchError, visitCommittedRecords, type AbortedTransaction } from './record-batches.ts';

// Record batches (format v2) built here byte by byte, as Kafka's log holds them.
function varint(n: number): number[] {
  let z = (n << 1) ^ (n >> 31);
  const out: number[] = [];
  z >>>= 0;
  while (z > 0x7f) {
    out.push((z & 0x7f) | 0x80);
    z >>>= 7;
  }
  out.push(z);
  return out;
}

interface TestRecord {
  readonly key: string | null;
  readonly value: string | null;
  readonly headers?: number;
}

function record(offsetDelta: number, r: TestRecord, timestampDelta = 5): Buffer {
  const key = r.key === null ? null : Buffer.from(r.key);
  const value = r.value === null ? null : Buffer.from(r.value);
  const body = Buffer.from([
    0, // attributes
    ...varint(timestampDelta),
    ...varint(offsetDelta),
    ...varint(key === null ? -1 : key.length),
    ...(key ?? []),
    ...varint(value === null ? -1 : value.length),
    ...(value ?? []),
    ...varint(r.headers ?? 0),
    // one header per count: key "h", value "v"
    ...Array.from({ length: r.headers ?? 0 }, () => [...varint(1), 0x68, ...varint(1), 0x76]).flat(),
  ]);
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
}

/** A transaction marker's one record: key version 0 and type (0 abort, 1 commit), value version and coordinator epoch. */
function controlRecord(marker: 'commit' | 'abort'): Buffer {
  const key = Buffer.from([0, 0, 0, marker === 'abort' ? 0 : 1]);
  const value = Buffer.from([0, 0, 0, 0, 0, 0]);
  const body = Buffer.from([0, ...varint(0), ...varint(0), ...varint(key.length), ...key, ...varint(value.length), ...value, ...varint(0)]);
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
}

interface Batch {
  readonly baseOffset: number;
  readonly records: readonly TestRecord[];
  readonly producerId?: bigint;
  readonly transactional?: boolean;
  /** A transaction marker: commit or abort. */
  readonly marker?: 'commit' | 'abort';
  readonly codec?: 'gzip' | 'zstd';
  /** Offsets the batch spans beyond its records (compaction leaves gaps). */
  readonly lastOffsetDelta?: number;
}

function batch(b: Batch): Buffer {
  const records =
    b.marker === undefined
      ? b.records.map((r, i) => record(i, r))
      : [controlRecord(b.marker)];
  let payload = Buffer.concat(records);
  const codecs = { gzip: 1, zstd: 4 } as const;
  if (b.codec === 'gzip') payload = gzipSync(payload);
  if (b.codec === 'zstd') payload = zstdCompressSync(payload);
  const header = Buffer.alloc(61);
  header.writeBigInt64BE(BigInt(b.baseOffset), 0);
  header.writeInt32BE(61 - 12 + payload.length, 8);
  header.writeInt32BE(0, 12); // leader epoch
  header.writeInt8(2, 16); // magic
  header.writeUInt32BE(0, 17); // crc: not checked by the reader
  const attributes = (b.codec === undefined ? 0 : codecs[b.codec]) | (b.transactional || b.marker ? 0x10 : 0) | (b.marker ? 0x20 : 0);
  header.writeInt16BE(attributes, 21);
  header.writeInt32BE(b.lastOffsetDelta ?? Math.max(0, records.length - 1), 23);
  header.writeBigInt64BE(1_700_000_000_000n, 27);
  header.writeBigInt64BE(1_700_000_000_000n, 35);
  header.writeBigInt64BE(b.producerId ?? -1n, 43);
  header.writeInt16BE(0, 51);
  header.writeInt32BE(0, 53);
  header.writeInt32BE(records.length, 57);
  return Buffer.concat([header, payload]);
}

function read(records: Buffer, aborted: AbortedTransaction[] = [], from = 0) {
  const seen: { offset: number; key: string | null; value: string | null }[] = [];
  const next = visitCommittedRecords(records, aborted, from, (offset, data, ks, kl, vs, vl) => {
    seen.push({ offset, key: kl < 0 ? null : data.toString('utf8', ks, ks + kl), value: vl < 0 ? null : data.toString('utf8', vs, vs + vl) });
  });
  return { seen, next };
}

/** A zigzag varlong of any safe integer (varint() above is 32-bit). */
function varlong(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z > 0x7f) {
    out.push((z % 128) | 0x80);
    z = Math.floor(z / 128);
  }
  out.push(z);
  return out;
}

/** A record with a given timestamp delta and headers (name, value or null), as the log holds it. */
function recordWith(offsetDelta: number, value: string, timestampDelta: number, headers: readonly (readonly [string, string | null])[]): Buffer {
  const v = Buffer.from(value);
  const body = Buffer.from([
    0,
    ...varlong(timestampDelta),
    ...varint(offsetDelta),
    ...varint(-1),
    ...varint(v.length),
    ...v,
    ...varint(headers.length),
    ...headers.flatMap(([name, hv]) => [...varint(Buffer.byteLength(name)), ...Buffer.from(name), ...(hv === null ? varint(-1) : [...varint(Buffer.byteLength(hv)), ...Buffer.from(hv)])]),
  ]);
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
}

describe('visitCommittedRecords', () => {
  it("gives each record's timestamp (the producer's, or the broker's for log append time) and its headers", () => {
    const payload = Buffer.concat([
      recordWith(0, 'a', 0, []),
      recordWith(1, 'b', 1_234, [['applied', '1'], ['reason', 'not JSON: é']]),
      // A delta beyond 32 bits, a header without a value, a name given twice.
      recordWith(2, 'c', 5_000_000_000, [['x', null], ['dup', 'one'], ['dup', 'two']]),
    ]);
    const header = batch({ baseOffset: 40, records: [{ key: 'k', value: 'v' }, { key: 'k', value: 'v' }, { key: 'k', value: 'v' }] }).subarray(0, 61);
    const createTime = Buffer.concat([header, payload]);
    createTime.writeInt32BE(61 - 12 + payload.length, 8);
    createTime.writeBigInt64BE(1_700_000_000_000n, 27);
    createTime.writeBigInt64BE(1_700_000_009_999n, 35);
    const seen: { offset: number; value: string; timestamp: number; headers: Record<string, unknown> }[] = [];
    const visit = (offset: number, data: Buffer, _ks: number, _kl: number, vs: number, vl: number, timestamp: number, headersAt: number) => {
      const headers = Object.fromEntries(Object.entries(readHeaders(data, headersAt)).map(([n, h]) => [n, Array.isArray(h) ? h.map(String) : h === undefined ? null : String(h)]));
      seen.push({ offset, value: data.toString('utf8', vs, vs + vl), timestamp, headers });
    };
    visitCommittedRecords(createTime, [], 0, visit);
    expect(seen).toEqual([
      { offset: 40, value: 'a', timestamp: 1_700_000_000_000, headers: {} },
      { offset: 41, value: 'b', timestamp: 1_700_000_001_234, headers: { applied: '1', reason: 'not JSON: é' } },
      { offset: 42, value: 'c', timestamp: 1_705_000_000_000, headers: { x: null, dup: ['one', 'two'] } },
    ]);
    // Log append time: every record has the batch's max timestamp, the broker's.
    const appendTime = Buffer.from(createTime);
    appendTime.writeInt16BE(0x08, 21);
    seen.length = 0;
    visitCommittedRecords(appendTime, [], 0, visit);
    expect(seen.map((r) => r.timestamp)).toEqual([1_700_000_009_999, 1_700_000_009_999, 1_700_000_009_999]);
    // Compressed: the timestamps and headers of the decompressed records.
    const gzipped = Buffer.concat([header, gzipSync(payload)]);
    gzipped.writeInt32BE(61 - 12 + gzipped.length - 61, 8);
    gzipped.writeInt16BE(1, 21);
    seen.length = 0;
    visitCommittedRecords(gzipped, [], 0, visit);
    expect(seen.map((r) => [r.offset, r.timestamp, r.headers])).toEqual([
      [40, 1_700_000_000_000, {}],
      [41, 1_700_000_001_234, { applied: '1', reason: 'not JSON: é' }],
      [42, 1_705_000_000_000, { x: null, dup: ['one', 'two'] }],
    ]);
    // Which of them a receiver that makes records later would have to decompress again.
    expect(anyCompressed(createTime)).toBe(false);
    expect(anyCompressed(Buffer.concat([createTime, gzipped]))).toBe(true);
    // Up to an offset: the records before it, from either.
    for (const batches of [createTime, gzipped]) {
      seen.length = 0;
      visitCommittedRecords(batches, [], 41, visit, 42);
      expect(seen.map((r) => r.offset)).toEqual([41]);
    }
  });

  it('gives every record with its offset, key and value, nulls and headers too, and the offset after the last batch', () => {
    const records = Buffer.concat([
      batch({ baseOffset: 0, records: [{ key: 'a', value: '{"n":1}' }, { key: null, value: 'x'.repeat(300), headers: 2 }] }),
      batch({ baseOffset: 2, records: [{ key: 'tomb', value: null }] }),
    ]);
    expect(read(records)).toEqual({
      seen: [
        { offset: 0, key: 'a', value: '{"n":1}' },
        { offset: 1, key: null, value: 'x'.repeat(300) },
        { offset: 2, key: 'tomb', value: null },
      ],
      next: 3,
    });
  });

  it('leaves out records before the offset asked for (a fetch starts at the batch that holds it)', () => {
    const records = batch({ baseOffset: 10, records: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }, { key: 'c', value: '3' }] });
    expect(read(records, [], 11).seen.map((r) => r.offset)).toEqual([11, 12]);
  });

  it('skips transaction markers and leaves out an aborted transaction, each producer on its own', () => {
    const records = Buffer.concat([
      batch({ baseOffset: 0, producerId: 7n, transactional: true, records: [{ key: 'k', value: 'aborted-1' }, { key: 'k', value: 'aborted-2' }] }),
      batch({ baseOffset: 2, producerId: 8n, transactional: true, records: [{ key: 'k', value: 'committed-1' }] }),
      batch({ baseOffset: 3, producerId: 7n, marker: 'abort', records: [] }),
      batch({ baseOffset: 4, producerId: 8n, marker: 'commit', records: [] }),
      // producer 7 again, in a transaction that commits: not aborted
      batch({ baseOffset: 5, producerId: 7n, transactional: true, records: [{ key: 'k', value: 'committed-2' }] }),
      batch({ baseOffset: 6, producerId: 7n, marker: 'commit', records: [] }),
      batch({ baseOffset: 7, records: [{ key: 'k', value: 'plain' }] }),
    ]);
    const { seen, next } = read(records, [{ producerId: 7n, firstOffset: 0 }]);
    expect(seen.map((r) => [r.offset, r.value])).toEqual([
      [2, 'committed-1'],
      [5, 'committed-2'],
      [7, 'plain'],
    ]);
    expect(next).toBe(8);
    // Without the response's aborted transactions everything is committed (read_uncommitted's view).
    expect(read(records).seen.map((r) => r.value)).toEqual(['aborted-1', 'aborted-2', 'committed-1', 'committed-2', 'plain']);
  });

  it('leaves out an aborted transaction that opened before this fetch, until its marker', () => {
    const records = Buffer.concat([
      batch({ baseOffset: 20, producerId: 3n, transactional: true, records: [{ key: 'k', value: 'aborted' }] }),
      batch({ baseOffset: 21, producerId: 3n, marker: 'abort', records: [] }),
      batch({ baseOffset: 22, producerId: 3n, transactional: true, records: [{ key: 'k', value: 'next-txn' }] }),
    ]);
    expect(read(records, [{ producerId: 3n, firstOffset: 12 }], 20).seen.map((r) => r.value)).toEqual(['next-txn']);
  });

  it('reads gzip and zstd batches', () => {
    const records = Buffer.concat([
      batch({ baseOffset: 0, codec: 'gzip', records: [{ key: 'a', value: 'one' }, { key: 'b', value: 'two' }] }),
      batch({ baseOffset: 2, codec: 'zstd', records: [{ key: 'c', value: 'three' }] }),
    ]);
    expect(read(records).seen.map((r) => [r.offset, r.key, r.value])).toEqual([
      [0, 'a', 'one'],
      [1, 'b', 'two'],
      [2, 'c', 'three'],
    ]);
  });

  it('stops before a partial batch at the end of a fetch, and completeBatches agrees', () => {
    const whole = batch({ baseOffset: 0, records: [{ key: 'a', value: '1' }] });
    const second = batch({ baseOffset: 1, records: [{ key: 'b', value: '2' }] });
    const cut = Buffer.concat([whole, second.subarray(0, second.length - 3)]);
    expect(read(cut)).toEqual({ seen: [{ offset: 0, key: 'a', value: '1' }], next: 1 });
    expect(completeBatches(cut)).toEqual({ end: whole.length, nextOffset: 1 });
    expect(completeBatches(whole.subarray(0, 30))).toEqual({ end: 0, nextOffset: undefined });
  });

  it('takes the next offset from the batch header, past the gaps compaction leaves', () => {
    const records = batch({ baseOffset: 100, lastOffsetDelta: 9, records: [{ key: 'a', value: 'kept' }] });
    expect(read(records)).toEqual({ seen: [{ offset: 100, key: 'a', value: 'kept' }], next: 110 });
  });

  it('refuses an old message format and a codec it cannot read, naming them', () => {
    const old = batch({ baseOffset: 0, records: [{ key: 'a', value: '1' }] });
    old.writeInt8(1, 16);
    expect(() => read(old)).toThrow(new RecordBatchError('a record batch of format 1 at offset 0: only format 2 (Kafka 0.11 and later) is read'));
    const snappy = batch({ baseOffset: 0, records: [{ key: 'a', value: '1' }] });
    snappy.writeInt16BE(2, 21);
    expect(() => read(snappy)).toThrow(/compressed with snappy: only none, gzip and zstd are read/);
  });
});
