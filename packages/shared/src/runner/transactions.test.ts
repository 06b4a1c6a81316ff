import { describe, expect, it } from 'vitest';
import type { BatchContext } from './lanes.ts';
import type { ConsumedRecord } from './records.ts';
import { freshWork, keyedLock, type SlotOwner } from './transactions.ts';

const consumed = (partition: number, offset: number): ConsumedRecord => ({ topic: 'orders', partition, offset: String(offset), key: null, value: null, headers: {}, timestamp: '0' });
const run = (partition: number, offsets: number[]): BatchContext =>
  ({
    source: { topic: 'orders', partition },
    records: offsets.map((o) => consumed(partition, o)),
    fetchedOffset: String(offsets[0]),
    nextOffset: String(offsets[offsets.length - 1]! + 1),
    highWatermark: '100',
    lane: { revoked: false },
  }) as unknown as BatchContext;

describe('freshWork', () => {
  const owner = (committed: Record<string, number>, member?: SlotOwner['member']): SlotOwner => ({
    slot: 0,
    producer: undefined as never,
    committed: new Map(Object.entries(committed).map(([k, v]) => [k, BigInt(v)])),
    owns: () => true,
    ...(member === undefined ? {} : { member }),
  });

  it('drops the records an earlier owner committed, and runs with nothing left', () => {
    const work = freshWork(owner({ 'orders-0': 12, 'orders-1': 50 }), [run(0, [10, 11, 12, 13]), run(1, [40, 41])]);
    expect(work).toHaveLength(1);
    expect(work[0]!.fresh.map((r) => r.offset)).toEqual(['12', '13']);
  });

  it('keeps a run whole when its first record is fresh', () => {
    const runs = [run(0, [5, 6]), run(2, [0, 1])];
    const work = freshWork(owner({ 'orders-0': 5, 'orders-2': 0 }), runs);
    expect(work.map((w) => w.fresh)).toEqual([runs[0]!.records, runs[1]!.records]);
  });

  it('refuses a run of a partition it owns whose committed offset it did not read (it would read as "nothing committed")', () => {
    expect(() => freshWork(owner({ 'orders-0': 5 }), [run(0, [5, 6]), run(2, [0, 1])])).toThrow('no committed offset read for orders-2, which this owner commits');
    const member = { generationId: 4, memberId: 'm', partitions: [{ topic: 'orders', partition: 2 }], assigned: new Set(['orders-2']) };
    expect(() => freshWork(owner({}, member), [run(2, [0, 1])])).toThrow('no committed offset read for orders-2');
  });

  it("with one producer per instance, drops runs of partitions its generation did not assign it", () => {
    const runs = [run(0, [5, 6]), run(2, [0, 1])];
    const work = freshWork(owner({ 'orders-0': 6 }, { generationId: 4, memberId: 'm', partitions: [{ topic: 'orders', partition: 0 }], assigned: new Set(['orders-0']) }), runs);
    expect(work.map((w) => [w.run.source.partition, w.fresh.map((r) => r.offset)])).toEqual([[0, ['6']]]);
  });
});

describe('keyedLock', () => {
  it('runs calls of one key one after another, in order, and other keys alongside', async () => {
    const lock = keyedLock<number>();
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = lock(1, async () => {
      events.push('1a start');
      await gate;
      events.push('1a end');
    });
    const second = lock(1, async () => {
      events.push('1b');
    });
    const other = lock(2, async () => {
      events.push('2');
    });
    await other;
    expect(events).toEqual(['1a start', '2']);
    release();
    await Promise.all([first, second]);
    expect(events).toEqual(['1a start', '2', '1a end', '1b']);
  });

  it('goes on after a call that failed, and passes its error to its caller', async () => {
    const lock = keyedLock<string>();
    const failed = lock('k', () => Promise.reject(new Error('boom')));
    const next = lock('k', async () => undefined);
    await expect(failed).rejects.toThrow('boom');
    await expect(next).resolves.toBeUndefined();
  });
});
