/** The slot assigner: whole slots per member, co-partitioned, and members must agree on the count. */
import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';
import { slotAssigner, slotOf } from './kafka.ts';

const logger = createLogger('test', 'silent');
const PARTITIONS = 6;
const cluster = { findTopicPartitionMetadata: () => Array.from({ length: PARTITIONS }, (_, partitionId) => ({ partitionId })) };
const topics = ['orders.components', 'prices'];

async function assign(slots: number, memberSlots: Record<string, number | undefined>) {
  const assigner = (slotAssigner(slots, logger) as (deps: unknown) => ReturnType<PartitionAssigner>)({ cluster });
  const members = Object.entries(memberSlots).map(([memberId, theirs]) => ({
    memberId,
    memberMetadata: AssignerProtocol.MemberMetadata.encode({
      version: 0,
      topics,
      userData: theirs === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify({ slots: theirs })),
    }),
  }));
  const result = await assigner.assign({ members, topics, groupId: 'g' } as never);
  return Object.fromEntries(result.map(({ memberId, memberAssignment }) => [memberId, AssignerProtocol.MemberAssignment.decode(memberAssignment)!.assignment]));
}

describe('slotAssigner', () => {
  it('puts partition p of every topic in slot p mod slots', () => {
    expect([0, 1, 2, 3, 4, 5].map((p) => slotOf(p, 3))).toEqual([0, 1, 2, 0, 1, 2]);
    expect([0, 1, 2, 3, 4, 5].map((p) => slotOf(p, 1))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('with one slot gives every partition of every topic to one member, the other gets none', async () => {
    expect(await assign(1, { b: 1, a: 1 })).toEqual({
      a: { 'orders.components': [0, 1, 2, 3, 4, 5], prices: [0, 1, 2, 3, 4, 5] },
      b: {},
    });
  });

  it('deals whole slots round robin over the members sorted by id, same partitions of each topic', async () => {
    expect(await assign(3, { m2: 3, m1: 3 })).toEqual({
      m1: { 'orders.components': [0, 2, 3, 5], prices: [0, 2, 3, 5] },
      m2: { 'orders.components': [1, 4], prices: [1, 4] },
    });
  });

  it('gives nothing to a member that uses another slot count or announced none', async () => {
    expect(await assign(2, { a: 2, b: 3, c: undefined })).toEqual({
      a: { 'orders.components': [0, 1, 2, 3, 4, 5], prices: [0, 1, 2, 3, 4, 5] },
      b: {},
      c: {},
    });
  });
});
