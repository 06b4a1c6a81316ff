/**
 * patches/kafkajs@2.2.4.patch speeds up two steps of every produce request: the CRC-32C of each
 * record batch (slicing by 8 instead of a byte at a time) and the grouping of a send's messages by
 * partition (it copied each partition's list for every message). These tests pin that the results
 * are unchanged.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (buffer: Buffer) => number;
type Message = { key: string; value: string };
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
