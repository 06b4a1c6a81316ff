/**
 * patches/kafkajs@2.2.4.patch speeds up the steps of every produce request: the CRC-32C of each
 * record batch (slicing by 8 instead of a byte at a time), the grouping of a send's messages by
 * partition (it copied each partition's list for every message), and the encoding of records
 * (exactly sized, unzeroed buffers; varints written in place instead of through an array and a
 * Buffer each). These tests pin that the bytes are unchanged.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (buffer: Buffer) => number;
type Message = { key: string; value: string };
const Encoder = require('kafkajs/src/protocol/encoder') as new () => { writeVarLong(v: unknown): { buffer: Buffer }; writeVarInt(v: number): { buffer: Buffer } };
const encodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0') as (record: {
  offsetDelta: number;
  timestampDelta: unknown;
  key: Buffer;
  value: Buffer;
  headers: Record<string, string>;
}) => { buffer: Buffer };
const Long = require('kafkajs/src/utils/long') as { fromValue(v: number): unknown };
const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition') as (args: {
  topic: string;
  partitionMetadata: unknown[];
  messages: Message[];
  partitioner: (args: { message: Message }) => number;
}) => Record<string, Message[]>;

/** CRC-32C bit by bit (reflected polynomial 0x82F63B78): slow and obviously right. */
function referenceCrc32C(buffer: Uint8Array): number {
  let crc = ~0;
  for (const byte of buffer) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return ~crc >>> 0;
}

describe('kafkajs record batch CRC-32C (patched)', () => {
  it('gives the standard check value and the empty value', () => {
    expect(crc32C(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32C(Buffer.alloc(0))).toBe(0);
    expect(crc32C(Buffer.alloc(32))).toBe(0x8a9136aa);
  });

  it('equals the bitwise CRC for every length 0-300 and for a 512 KiB buffer', () => {
    for (let length = 0; length <= 300; length++) {
      const buffer = randomBytes(length);
      expect(crc32C(buffer), `length ${length}`).toBe(referenceCrc32C(buffer));
    }
    const large = randomBytes(512 * 1024);
    expect(crc32C(large)).toBe(referenceCrc32C(large));
  });
});

describe('kafkajs grouping of messages by partition (patched)', () => {
  it('keeps every message once, in send order within its partition', () => {
    const messages = Array.from({ length: 10_000 }, (_, i) => ({ key: `k${i}`, value: String(i) }));
    const grouped = groupMessagesPerPartition({
      topic: 't',
      partitionMetadata: [{}, {}, {}],
      messages,
      partitioner: ({ message }) => Number(message.value) % 3,
    });
    expect(Object.keys(grouped).sort()).toEqual(['0', '1', '2']);
    for (const [partition, list] of Object.entries(grouped)) {
      expect(list).toEqual(messages.filter((m) => Number(m.value) % 3 === Number(partition)));
    }
    expect(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 })).toEqual({});
  });
});

describe('kafkajs record encoding (patched)', () => {
  it('writes zigzag varints and varlongs as the protocol defines them', () => {
    const expected: [number, string][] = [
      [0, '00'], [1, '02'], [-1, '01'], [63, '7e'], [-64, '7f'], [64, '8001'], [300, 'd804'], [-300, 'd704'],
      [2 ** 29 - 1, 'feffffff03'], [2 ** 29, '8080808004'], [2 ** 40, '808080808040'], [-(2 ** 40), 'ffffffffff3f'],
    ];
    for (const [value, hex] of expected) {
      expect(new Encoder().writeVarLong(value).buffer.toString('hex'), `varlong ${value}`).toBe(hex);
      expect(new Encoder().writeVarLong(Long.fromValue(value)).buffer.toString('hex'), `Long ${value}`).toBe(hex);
      expect(new Encoder().writeVarLong(String(value)).buffer.toString('hex'), `string ${value}`).toBe(hex);
      if (Math.abs(value) < 2 ** 31) expect(new Encoder().writeVarInt(value).buffer.toString('hex'), `varint ${value}`).toBe(hex);
    }
  });

  it('encodes a record byte for byte, also values around the old default buffer size', () => {
    // length 12, attributes 0, timestamp delta 7, offset delta 5, key "k", value "v", 1 header a=b
    expect(encodeRecord({ offsetDelta: 5, timestampDelta: 7, key: Buffer.from('k'), value: Buffer.from('v'), headers: { a: 'b' } }).buffer.toString('hex')).toBe(
      '18000e0a026b02760202610262',
    );
    for (const length of [510, 511, 512, 513, 4096]) {
      const value = randomBytes(length);
      const bytes = encodeRecord({ offsetDelta: 1, timestampDelta: Long.fromValue(0), key: Buffer.from('IVE'), value, headers: {} }).buffer;
      const valueLength = Buffer.alloc(3);
      const n = (() => {
        let v = length * 2;
        let i = 0;
        while (v >= 0x80) {
          valueLength[i++] = (v & 0x7f) | 0x80;
          v >>>= 7;
        }
        valueLength[i++] = v;
        return i;
      })();
      const body = Buffer.concat([Buffer.from([0, 0, 2, 6]), Buffer.from('IVE'), valueLength.subarray(0, n), value, Buffer.from([0])]);
      expect(bytes.subarray(bytes.length - body.length).equals(body), `value of ${length} bytes`).toBe(true);
    }
  });
});
