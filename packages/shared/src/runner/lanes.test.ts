import { describe, expect, it } from 'vitest';
import { followingTaken, laneRoom, mergeBatches, runsBySource, takeUpTo, type BatchContext } from './lanes.ts';

describe('takeUpTo (records per transaction)', () => {
  // Offsets with gaps, as transaction markers leave them.
  const batch = (name: string, offsets: number[]) => ({
    name,
    records: offsets.map((o) => ({ offset: String(o) })),
    fetchedOffset: String(offsets[0]),
    nextOffset: String(offsets[offsets.length - 1]! + 1),
  });
  const shape = (bs: { name: string; records: { offset: string }[]; fetchedOffset: string; nextOffset: string }[]) =>
    bs.map((b) => `${b.name}:${b.records.map((r) => r.offset).join(',')} from ${b.fetchedOffset} next ${b.nextOffset}`);

  it('takes whole batches while they fit, and everything when all do', () => {
    const pending = [batch('a', [0, 1]), batch('b', [5, 6, 7])];
    expect(shape(takeUpTo(pending, 5).taken)).toEqual(['a:0,1 from 0 next 2', 'b:5,6,7 from 5 next 8']);
    expect(takeUpTo(pending, 5).rest).toEqual([]);
  });

  it('splits the batch that crosses the limit: its head commits after its last record, its tail is fetched from its first', () => {
    const { taken, rest } = takeUpTo([batch('a', [0, 1]), batch('b', [5, 6, 9, 10]), batch('c', [20])], 4);
    expect(shape(taken)).toEqual(['a:0,1 from 0 next 2', 'b:5,6 from 5 next 7']);
    expect(shape(rest)).toEqual(['b:9,10 from 9 next 11', 'c:20 from 20 next 21']);
  });

  it('stops at a batch boundary when the limit falls on one, and takes part of a first batch larger than the limit', () => {
    expect(shape(takeUpTo([batch('a', [0, 1]), batch('b', [2, 3])], 2).taken)).toEqual(['a:0,1 from 0 next 2']);
    const { taken, rest } = takeUpTo([batch('a', [0, 1, 2, 3, 4])], 2);
    expect(shape(taken)).toEqual(['a:0,1 from 0 next 2']);
    expect(shape(rest)).toEqual(['a:2,3,4 from 2 next 5']);
  });
});

describe('takeUpTo with whole batches (a streaming transaction\'s pieces)', () => {
  const batch = (name: string, offsets: number[]) => ({
    name,
    count: offsets.length,
    get records(): { offset: string }[] {
      made.push(name);
      return offsets.map((o) => ({ offset: String(o) }));
    },
    fetchedOffset: String(offsets[0]),
    nextOffset: String(offsets[offsets.length - 1]! + 1),
  });
  let made: string[] = [];

  it('takes whole batches up to the limit without making the records of any (counted by `whole`), and never splits one', () => {
    made = [];
    const pending = [batch('a', [0, 1]), batch('b', [2, 3, 4]), batch('c', [5])];
    const { taken, rest } = takeUpTo(pending, 4, (b) => b.count);
    expect(taken.map((b) => b.name)).toEqual(['a']);
    expect(rest.map((b) => b.name)).toEqual(['b', 'c']);
    expect(rest[0]).toBe(pending[1]); // left as queued
    expect(made).toEqual([]);
    expect(takeUpTo(pending, 6, (b) => b.count).taken.map((b) => b.name)).toEqual(['a', 'b', 'c']);
  });

  it('takes a first batch larger than the limit whole', () => {
    made = [];
    const { taken, rest } = takeUpTo([batch('a', [0, 1, 2, 3, 4]), batch('b', [5])], 2, (b) => b.count);
    expect(taken.map((b) => b.name)).toEqual(['a']);
    expect(rest.map((b) => b.name)).toEqual(['b']);
    expect(made).toEqual([]);
  });
});

describe('mergeBatches', () => {
  it("joins a partition's consecutive batches without taking any one's release (records made once each)", () => {
    let made = 0;
    const part = (offsets: number[]): BatchContext =>
      ({
        source: { topic: 'orders', partition: 0 },
        get records() {
          made++;
          return offsets.map((o) => ({ offset: String(o) }));
        },
        release: () => undefined,
        fetchedOffset: String(offsets[0]),
        nextOffset: String(offsets[offsets.length - 1]! + 1),
        highWatermark: '100',
        lane: { revoked: false },
      }) as unknown as BatchContext;
    const merged = mergeBatches([part([0, 1]), part([2, 3])]);
    expect(made).toBe(2);
    expect(merged.records.map((r) => r.offset)).toEqual(['0', '1', '2', '3']);
    expect({ fetchedOffset: merged.fetchedOffset, nextOffset: merged.nextOffset, release: merged.release }).toEqual({ fetchedOffset: '0', nextOffset: '4', release: undefined });
  });
});

describe('runsBySource', () => {
  const entry = (partition: number, offsets: number[]) =>
    ({
      source: { topic: 'orders', partition },
      records: offsets.map((o) => ({ offset: String(o) })),
      fetchedOffset: String(offsets[0]),
      nextOffset: String(offsets[offsets.length - 1]! + 1),
    }) as unknown as BatchContext;

  it('merges consecutive batches of one partition into one run: first fetched offset, last next offset', () => {
    const runs = runsBySource([entry(0, [1, 2]), entry(0, [3]), entry(1, [7]), entry(0, [4, 5])]);
    expect(runs.map((r) => [r.source.partition, r.fetchedOffset, r.nextOffset, r.records.map((x) => x.offset)])).toEqual([
      [0, '1', '4', ['1', '2', '3']],
      [1, '7', '8', ['7']],
      [0, '4', '6', ['4', '5']],
    ]);
  });
});

describe('followingTaken (a streaming transaction takes only what follows what it holds)', () => {
  const entry = (partition: number, offsets: number[]) => ({
    source: { topic: 't', partition },
    records: offsets.map((o) => ({ offset: String(o) })),
    fetchedOffset: String(offsets[0]),
    nextOffset: String(offsets[offsets.length - 1]! + 1),
  });
  const shape = (es: ReturnType<typeof entry>[]) => es.map((e) => `${e.source.partition}:${e.records.map((r) => r.offset).join(',')} from ${e.fetchedOffset}`);

  it('after a rejoin fetched a partition again from before the transaction: leaves out what it took, keeps what is new', () => {
    const through = new Map<string, bigint>();
    expect(shape(followingTaken([entry(0, [0, 1, 2]), entry(1, [10, 11])], through))).toEqual(['0:0,1,2 from 0', '1:10,11 from 10']);
    // Partition 0 again from 0 (the committed offset), with more after it; partition 1 moving on.
    expect(shape(followingTaken([entry(0, [0, 1]), entry(0, [2, 3, 4]), entry(1, [12])], through))).toEqual(['0:3,4 from 3', '1:12 from 12']);
    expect(through).toEqual(new Map([['t-0', 5n], ['t-1', 13n]]));
    // Nothing new: nothing taken.
    expect(followingTaken([entry(0, [1, 2, 3, 4])], through)).toEqual([]);
  });
});

describe('laneRoom (what the lean reader may fetch)', () => {
  const lane = (pendingRecords: number, pendingBytes: number, bytesPerRecord: number, revoked = false) => ({ revoked, pendingRecords, pendingBytes, bytesPerRecord });

  it('sums each open lane’s room, in records or in bytes at its records’ size, whichever is less', () => {
    // 8,000 records or 4 MB: 1,000 records queued of 100 bytes leaves 7,000 records (bytes would allow 39,000);
    // 100 records of 1,000 bytes leave 3,900 records' worth of bytes (records would allow 7,900).
    expect(laneRoom([lane(1_000, 100_000, 100), lane(100, 100_000, 1_000)], 8_000, 4_000_000)).toBe(7_000 + 3_900);
  });

  it('counts a full or overfull lane as no room, and a revoked one not at all', () => {
    expect(laneRoom([lane(9_000, 900_000, 100), lane(10, 5_000_000, 500)], 8_000, 4_000_000)).toBe(0);
    expect(laneRoom([lane(0, 0, 100, true), lane(7_990, 799_000, 100)], 8_000, 4_000_000)).toBe(10);
  });

  it('is one lane’s worth before any lane opened (unbounded records: the bytes at 512 a record)', () => {
    expect(laneRoom([], 8_000, 4_000_000)).toBe(7_812);
    expect(laneRoom([], Number.POSITIVE_INFINITY, 4_000_000)).toBe(7_812);
    expect(laneRoom([lane(0, 0, 100, true)], 1_000, 4_000_000)).toBe(1_000);
  });
});
