/**
 * Producing, as the lean producer does it (transactional-producer.ts): records encoded straight
 * into their record batch (v2, uncompressed, one batch per partition and request), no object per
 * record, and the batches copied into the Produce request that carries them. Also
 * Kafka's key partitioner (murmur2, as the Java client and kafkajs compute it). Pure.
 */
import { crc32c } from './crc32c.ts';
import { Reader } from './connection.ts';

export const API_PRODUCE = 0;
export const PRODUCE_VERSION = 7;

/** A record to produce: text is written as UTF-8. */
export interface OutgoingRecord {
  readonly key: string | Buffer | null;
  /** null is a tombstone. */
  readonly value: string | Buffer | null;
  readonly headers?: Readonly<Record<string, string | Buffer>> | undefined;
}

/** murmur2 of `data` as Kafka's Java client computes it (Utils.murmur2), as a signed 32-bit number. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & 3;
  if (tail === 3) h ^= data[whole + 2]! << 16;
  if (tail >= 2) h ^= data[whole + 1]! << 8;
  if (tail >= 1) h = Math.imul(h ^ data[whole]!, m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's default partitioner gives a key: murmur2 made positive, modulo the count. */
export function keyPartition(key: string | Buffer, count: number): number {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  return (murmur2(bytes) & 0x7fffffff) % count;
}

/** Bytes of a record batch before its records. */
export const BATCH_HEADER_BYTES = 61;
const CRC_AT = 17;
const ATTRIBUTES_AT = 21;
const TRANSACTIONAL = 0x10;

const zigzag = (n: number) => ((n << 1) ^ (n >> 31)) >>> 0;
function uvarintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}
const varintSize = (n: number) => uvarintSize(zigzag(n));
function writeUvarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}
const writeVarint = (out: Buffer, at: number, n: number) => writeUvarint(out, at, zigzag(n));
const byteLength = (v: string | Buffer) => (typeof v === 'string' ? Buffer.byteLength(v) : v.length);
function writeBytes(out: Buffer, at: number, v: string | Buffer): number {
  return typeof v === 'string' ? at + out.write(v, at) : at + v.copy(out, at);
}

/** A batch's records: `records[start, end)`, all of one partition. */
export interface BatchOf {
  readonly records: readonly OutgoingRecord[];
  readonly start: number;
  readonly end: number;
}

/**
 * Sizes of the records of batches, computed once and kept for the writing (a string's UTF-8 length
 * is counted once). Reused from request to request: it holds no records.
 */
export class RecordSizes {
  private key = new Int32Array(1024);
  private value = new Int32Array(1024);
  private body = new Int32Array(1024);
  private count = 0;

  /** Starts over; returns where the next batch's records go (their index into these sizes). */
  reset(): void {
    this.count = 0;
  }

  private grow(n: number): void {
    if (this.count + n <= this.key.length) return;
    const size = Math.max(this.key.length * 2, this.count + n);
    for (const name of ['key', 'value', 'body'] as const) {
      const bigger = new Int32Array(size);
      bigger.set(this[name]);
      this[name] = bigger;
    }
  }

  /** Measures a batch's records; returns the index of its first record here and the batch's size in bytes. */
  measure(batch: BatchOf): { first: number; bytes: number } {
    const n = batch.end - batch.start;
    this.grow(n);
    const first = this.count;
    let bytes = BATCH_HEADER_BYTES;
    for (let i = 0; i < n; i++) {
      const record = batch.records[batch.start + i]!;
      const keyLength = record.key === null ? -1 : byteLength(record.key);
      const valueLength = record.value === null ? -1 : byteLength(record.value);
      let headers = 1;
      if (record.headers !== undefined) {
        const names = Object.keys(record.headers);
        headers = varintSize(names.length);
        for (const name of names) {
          const nameLength = Buffer.byteLength(name);
          const valueBytes = byteLength(record.headers[name]!);
          headers += varintSize(nameLength) + nameLength + varintSize(valueBytes) + valueBytes;
        }
      }
      // attributes, timestamp delta (0), offset delta, key, value, headers
      const body = 2 + varintSize(i) + varintSize(keyLength) + Math.max(0, keyLength) + varintSize(valueLength) + Math.max(0, valueLength) + headers;
      this.key[first + i] = keyLength;
      this.value[first + i] = valueLength;
      this.body[first + i] = body;
      bytes += varintSize(body) + body;
    }
    this.count += n;
    return { first, bytes };
  }

  /** Writes a measured batch at `at` (its size as measured); returns the offset after it. */
  write(out: Buffer, at: number, batch: BatchOf, first: number, header: BatchHeader): number {
    const begin = at;
    const n = batch.end - batch.start;
    out.writeBigInt64BE(0n, at); // base offset: the broker assigns it
    at += 12; // and the batch length, written last
    out.writeInt32BE(-1, at); // partition leader epoch
    out[at + 4] = 2; // magic
    at += 9; // and the CRC, written last
    out.writeInt16BE(header.transactional ? TRANSACTIONAL : 0, at);
    out.writeInt32BE(n - 1, at + 2); // last offset delta
    const high = Math.floor(header.timestamp / 0x100000000);
    const low = header.timestamp >>> 0;
    out.writeUInt32BE(high, at + 6);
    out.writeUInt32BE(low, at + 10);
    out.writeUInt32BE(high, at + 14);
    out.writeUInt32BE(low, at + 18);
    out.writeBigInt64BE(header.producerId, at + 22);
    out.writeInt16BE(header.producerEpoch, at + 30);
    out.writeInt32BE(header.baseSequence, at + 32);
    out.writeInt32BE(n, at + 36);
    at += 40;
    for (let i = 0; i < n; i++) {
      const record = batch.records[batch.start + i]!;
      at = writeVarint(out, at, this.body[first + i]!);
      out[at++] = 0; // attributes
      out[at++] = 0; // timestamp delta
      at = writeVarint(out, at, i);
      const keyLength = this.key[first + i]!;
      at = writeVarint(out, at, keyLength);
      if (keyLength > 0) at = writeBytes(out, at, record.key!);
      const valueLength = this.value[first + i]!;
      at = writeVarint(out, at, valueLength);
      if (valueLength > 0) at = writeBytes(out, at, record.value!);
      if (record.headers === undefined) out[at++] = 0;
      else {
        const names = Object.keys(record.headers);
        at = writeVarint(out, at, names.length);
        for (const name of names) {
          const value = record.headers[name]!;
          at = writeVarint(out, at, Buffer.byteLength(name));
          at += out.write(name, at);
          at = writeVarint(out, at, byteLength(value));
          at = writeBytes(out, at, value);
        }
      }
    }
    out.writeInt32BE(at - begin - 12, begin + 8);
    out.writeUInt32BE(crc32c(out, begin + ATTRIBUTES_AT, at), begin + CRC_AT);
    return at;
  }
}

export interface BatchHeader {
  readonly producerId: bigint;
  readonly producerEpoch: number;
  readonly baseSequence: number;
  readonly transactional: boolean;
  /** Epoch milliseconds: every record's create time. */
  readonly timestamp: number;
}

/** One partition's part of a Produce request, its record batch encoded already (encodeBatch). */
export interface EncodedBatch {
  readonly partition: number;
  readonly bytes: Buffer;
}

/**
 * A record batch on its own, as produceRequest would write it: what a producer keeps of a batch
 * until the broker acknowledges it (to send it again), instead of its records.
 */
export function encodeBatch(batch: BatchOf, header: BatchHeader, sizes: RecordSizes): Buffer {
  sizes.reset();
  const { first, bytes } = sizes.measure(batch);
  const out = Buffer.allocUnsafe(bytes);
  const end = sizes.write(out, 0, batch, first, header);
  if (end !== bytes) throw new Error(`record batch: measured ${bytes} bytes, wrote ${end}`);
  return out;
}

/**
 * A Produce request (v7, acks all) carrying one batch per partition, each encoded already
 * (encodeBatch) and copied in. Every batch must be within the broker's message.max.bytes (the
 * caller splits larger ones over requests).
 */
export function produceRequest(transactionalId: string | null, timeoutMs: number, topics: ReadonlyMap<string, readonly EncodedBatch[]>): Buffer {
  let total = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId)) + 2 + 4 + 4;
  for (const [topic, batches] of topics) {
    total += 2 + Buffer.byteLength(topic) + 4;
    for (const batch of batches) total += 8 + batch.bytes.length;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  if (transactionalId === null) at = out.writeInt16BE(-1, at);
  else {
    at = out.writeInt16BE(Buffer.byteLength(transactionalId), at);
    at += out.write(transactionalId, at);
  }
  at = out.writeInt16BE(-1, at); // acks: all in-sync replicas
  at = out.writeInt32BE(timeoutMs, at);
  at = out.writeInt32BE(topics.size, at);
  for (const [topic, batches] of topics) {
    at = out.writeInt16BE(Buffer.byteLength(topic), at);
    at += out.write(topic, at);
    at = out.writeInt32BE(batches.length, at);
    for (const batch of batches) {
      at = out.writeInt32BE(batch.partition, at);
      at = out.writeInt32BE(batch.bytes.length, at);
      at += batch.bytes.copy(out, at);
    }
  }
  if (at !== total) throw new Error(`produce request: measured ${total} bytes, wrote ${at}`);
  return out;
}

/** Each partition's outcome in a Produce response (v7): its error code (0: written) and base offset. */
export function parseProduce(body: Buffer): { topic: string; partition: number; error: number; baseOffset: bigint }[] {
  const r = new Reader(body);
  const out: { topic: string; partition: number; error: number; baseOffset: bigint }[] = [];
  r.array((r) => {
    const topic = r.string() ?? '';
    r.array((r) => {
      const partition = r.int32();
      const error = r.int16();
      const baseOffset = r.int64();
      r.int64(); // log append time
      r.int64(); // log start offset
      out.push({ topic, partition, error, baseOffset });
    });
  });
  return out;
}
