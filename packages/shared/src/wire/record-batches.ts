/**
 * Kafka record batches (format v2, magic 2) decoded in place: no object per record, offsets as
 * numbers, keys and values as ranges of the fetched bytes. Committed records only: control
 * batches (transaction markers) are skipped and the records of aborted transactions left out, the
 * way Kafka's Java consumer does it for read_committed (the aborted transactions a Fetch response
 * lists, each opening at its first offset for its producer until that producer's abort marker).
 * Pure: the fetching is in committed-reader.ts.
 */
import { gunzipSync, zstdDecompressSync } from 'node:zlib';

/** A transaction a Fetch response reports as aborted: its producer and its first offset. */
export interface AbortedTransaction {
  readonly producerId: bigint;
  readonly firstOffset: number;
}

/**
 * Gets each committed record: its offset, and its key and value as `data[start, start + length)`
 * (length -1: null). The bytes are the fetch response's (or a decompressed copy): copy what must
 * outlive the call.
 */
export type RecordVisitor = (
  offset: number,
  data: Buffer,
  keyStart: number,
  keyLength: number,
  valueStart: number,
  valueLength: number,
  /** Epoch milliseconds: the producer's (create time) or the broker's (log append time). */
  timestamp: number,
  /** Where the record's headers start in `data` (see readHeaders). */
  headersAt: number,
) => void;

export class RecordBatchError extends Error {
  override readonly name = 'RecordBatchError';
}

/** Offsets of a batch header (record batch v2). */
const BASE_OFFSET = 0;
const BATCH_LENGTH = 8; // int32: bytes after this field
const MAGIC = 16;
const ATTRIBUTES = 21;
const LAST_OFFSET_DELTA = 23;
const FIRST_TIMESTAMP = 27;
const MAX_TIMESTAMP = 35;
const PRODUCER_ID = 43;
const RECORD_COUNT = 57;
const RECORDS = 61;
const LOG_OVERHEAD = 12; // base offset + batch length

const COMPRESSION_MASK = 0x07;
const LOG_APPEND_TIME = 0x08;
const TRANSACTIONAL = 0x10;
const CONTROL = 0x20;
const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

/** Where the complete batches of `records` end and the offset after the last of them (a fetch may end in a partial batch). */
export function completeBatches(records: Buffer): { end: number; nextOffset: number | undefined } {
  let at = 0;
  let nextOffset: number | undefined;
  while (at + RECORDS <= records.length) {
    const size = LOG_OVERHEAD + records.readInt32BE(at + BATCH_LENGTH);
    if (at + size > records.length) break;
    nextOffset = Number(records.readBigInt64BE(at + BASE_OFFSET)) + records.readInt32BE(at + LAST_OFFSET_DELTA) + 1;
    at += size;
  }
  return { end: at, nextOffset };
}

/**
 * Reads the varint (zigzag) at `at`; the position after it is left in `position.at`. Kept to
 * 32 bits' worth (lengths, deltas): a timestamp delta beyond that is skipped with skipVarint.
 */
function readVarint(data: Buffer, position: { at: number }): number {
  let at = position.at;
  let byte = data[at++]!;
  let value = byte & 0x7f;
  let shift = 7;
  while (byte & 0x80) {
    byte = data[at++]!;
    value |= (byte & 0x7f) << shift;
    shift += 7;
    if (shift > 35) throw new RecordBatchError('a varint longer than 5 bytes');
  }
  position.at = at;
  return (value >>> 1) ^ -(value & 1);
}

/** Reads the varlong (zigzag) at `at` as a number: exact up to 2^53 (a timestamp delta). */
function readVarlong(data: Buffer, position: { at: number }): number {
  let at = position.at;
  let byte = data[at++]!;
  let value = byte & 0x7f;
  let scale = 128;
  for (let n = 0; byte & 0x80; n++) {
    if (n > 9) throw new RecordBatchError('a varlong longer than 10 bytes');
    byte = data[at++]!;
    value += (byte & 0x7f) * scale;
    scale *= 128;
  }
  position.at = at;
  return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
}

/** A record's headers (from RecordVisitor's `headersAt`): a name given twice has its values in order. */
export function readHeaders(data: Buffer, at: number): Record<string, Buffer | Buffer[] | undefined> {
  const position = { at };
  const count = readVarint(data, position);
  const headers: Record<string, Buffer | Buffer[] | undefined> = {};
  for (let i = 0; i < count; i++) {
    const nameLength = readVarint(data, position);
    const name = data.toString('utf8', position.at, position.at + nameLength);
    position.at += nameLength;
    const valueLength = readVarint(data, position);
    const value = valueLength < 0 ? undefined : data.subarray(position.at, position.at + valueLength);
    if (valueLength > 0) position.at += valueLength;
    const known = headers[name];
    if (!Object.hasOwn(headers, name)) headers[name] = value;
    else if (value !== undefined) headers[name] = Array.isArray(known) ? [...known, value] : known === undefined ? value : [known, value];
  }
  return headers;
}

/** Whether a record's headers (from RecordVisitor's `headersAt`) have `name` with exactly `value`: read in place, nothing made. */
export function hasHeader(data: Buffer, at: number, name: Buffer, value: Buffer): boolean {
  const position = { at };
  const count = readVarint(data, position);
  for (let i = 0; i < count; i++) {
    const nameLength = readVarint(data, position);
    const nameAt = position.at;
    position.at += nameLength;
    const valueLength = readVarint(data, position);
    const valueAt = position.at;
    if (valueLength > 0) position.at += valueLength;
    if (
      nameLength === name.length &&
      valueLength === value.length &&
      data.compare(name, 0, name.length, nameAt, nameAt + nameLength) === 0 &&
      data.compare(value, 0, value.length, valueAt, valueAt + valueLength) === 0
    ) {
      return true;
    }
  }
  return false;
}

function skipVarint(data: Buffer, position: { at: number }): void {
  let at = position.at;
  for (let n = 0; data[at++]! & 0x80; n++) if (n > 10) throw new RecordBatchError('a varlong longer than 10 bytes');
  position.at = at;
}

function decompress(codec: number, bytes: Buffer): Buffer {
  switch (codec) {
    case 1:
      return gunzipSync(bytes);
    case 4:
      return zstdDecompressSync(bytes);
    default:
      throw new RecordBatchError(`records compressed with ${CODECS[codec] ?? `codec ${codec}`}: only none, gzip and zstd are read`);
  }
}

/** Whether any complete batch in `records` (one partition's records of a Fetch response) is compressed. */
export function anyCompressed(records: Buffer): boolean {
  let at = 0;
  while (at + RECORDS <= records.length) {
    const size = LOG_OVERHEAD + records.readInt32BE(at + BATCH_LENGTH);
    if (at + size > records.length) break;
    if (records.readInt16BE(at + ATTRIBUTES) & COMPRESSION_MASK) return true;
    at += size;
  }
  return false;
}

/**
 * Every committed record of the complete batches in `records` (one partition's records of a Fetch
 * response, read_committed) from offset `from` on, in order, to `visit`. `aborted`: the response's
 * aborted transactions of this partition. Records at `until` and after are not visited. Returns
 * the offset after the last complete batch read (undefined if there was none).
 */
export function visitCommittedRecords(records: Buffer, aborted: readonly AbortedTransaction[], from: number, visit: RecordVisitor, until = Number.POSITIVE_INFINITY): number | undefined {
  const opening = [...aborted].sort((a, b) => a.firstOffset - b.firstOffset);
  let nextOpening = 0;
  // Producers whose aborted transaction is open at the batch being read (as a string: a Map of bigints is slower).
  const abortedProducers = new Set<string>();
  let at = 0;
  let nextOffset: number | undefined;
  const position = { at: 0 };
  while (at + RECORDS <= records.length) {
    const size = LOG_OVERHEAD + records.readInt32BE(at + BATCH_LENGTH);
    if (at + size > records.length) break;
    const magic = records.readInt8(at + MAGIC);
    if (magic !== 2) throw new RecordBatchError(`a record batch of format ${magic} at offset ${records.readBigInt64BE(at)}: only format 2 (Kafka 0.11 and later) is read`);
    const baseOffset = Number(records.readBigInt64BE(at + BASE_OFFSET));
    const lastOffset = baseOffset + records.readInt32BE(at + LAST_OFFSET_DELTA);
    // Records from `until` on are not wanted (nor what later batches say of aborts).
    if (baseOffset >= until) break;
    const attributes = records.readInt16BE(at + ATTRIBUTES);
    const batchEnd = at + size;
    nextOffset = lastOffset + 1;
    while (nextOpening < opening.length && opening[nextOpening]!.firstOffset <= lastOffset) {
      abortedProducers.add(opening[nextOpening]!.producerId.toString());
      nextOpening++;
    }
    if (attributes & TRANSACTIONAL || attributes & CONTROL) {
      const producer = records.readBigInt64BE(at + PRODUCER_ID).toString();
      if (attributes & CONTROL) {
        // One control record: its key is version (int16) and type (0 abort, 1 commit).
        position.at = at + RECORDS;
        readVarint(records, position); // length
        position.at += 1; // attributes
        skipVarint(records, position); // timestamp delta
        readVarint(records, position); // offset delta
        const keyLength = readVarint(records, position);
        if (keyLength >= 4 && records.readInt16BE(position.at + 2) === 0) abortedProducers.delete(producer);
        at = batchEnd;
        continue;
      }
      if (abortedProducers.has(producer)) {
        at = batchEnd;
        continue;
      }
    }
    if (lastOffset < from) {
      at = batchEnd;
      continue;
    }
    const count = records.readInt32BE(at + RECORD_COUNT);
    const logAppendTime = (attributes & LOG_APPEND_TIME) !== 0;
    const firstTimestamp = Number(records.readBigInt64BE(at + (logAppendTime ? MAX_TIMESTAMP : FIRST_TIMESTAMP)));
    const codec = attributes & COMPRESSION_MASK;
    let data = records;
    position.at = at + RECORDS;
    let end = batchEnd;
    if (codec !== 0) {
      data = decompress(codec, records.subarray(at + RECORDS, batchEnd));
      position.at = 0;
      end = data.length;
    }
    for (let i = 0; i < count; i++) {
      const length = readVarint(data, position);
      const recordEnd = position.at + length;
      if (recordEnd > end) throw new RecordBatchError(`a record at offset ${baseOffset} + ${i} runs past its batch`);
      position.at += 1; // attributes
      const timestampDelta = readVarlong(data, position);
      const offset = baseOffset + readVarint(data, position);
      const keyLength = readVarint(data, position);
      const keyStart = position.at;
      if (keyLength > 0) position.at += keyLength;
      const valueLength = readVarint(data, position);
      const valueStart = position.at;
      if (valueLength > 0) position.at += valueLength;
      if (offset >= until) break;
      if (offset >= from) visit(offset, data, keyStart, keyLength, valueStart, valueLength, logAppendTime ? firstTimestamp : firstTimestamp + timestampDelta, position.at);
      position.at = recordEnd;
    }
    at = batchEnd;
  }
  return nextOffset;
}
