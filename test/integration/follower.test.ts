/**
 * The lean reader following a changing assignment (packages/shared/src/wire/follower.ts) on the
 * real broker: records committed while it follows arrive once each, in order, with aborted
 * transactions left out, over two topics; a new assignment drops a partition and adds one from an
 * offset; a batch whose hand-over fails is handed over again; nothing arrives after stop(); with
 * a receiver's room, what is fetched and not yet taken stays within that room; a receiver of whole
 * fetches gets every partition in one call, and the whole fetch again when that call failed.
 */
import { randomUUID } from 'node:crypto';
import { CommittedFollower, MIN_FETCH_BYTES, type FollowedBatch, type Kafka, type Producer } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokers, sleep, testKafka, uniqueName, waitFor } from './helpers.ts';
import { settledEndOffsets } from './end-offsets.ts';

let kafka: Kafka;
const topics = [uniqueName('it_follow_a'), uniqueName('it_follow_b')];
const PARTITIONS = 3;
const producers: Producer[] = [];
const options = () => ({ brokers: brokers().split(','), clientId: 'it-follow', partitionMaxBytes: 1024, maxBytes: 2048, maxWaitMs: 50 });
const tp = (topic: string, partition: number) => `${topic}:${partition}`;

/** What a follower was handed, per topic-partition: key=value in order, and the offsets seen. */
class Seen {
  readonly values = new Map<string, string[]>();
  readonly offsets = new Map<string, number[]>();
  readonly next = new Map<string, number>();
  add(batch: FollowedBatch): void {
    const at = tp(batch.topic, batch.partition);
    for (const r of batch.records) {
      (this.values.get(at) ?? this.values.set(at, []).get(at)!).push(`${r.key?.toString()}=${r.value?.toString() ?? 'null'}`);
      (this.offsets.get(at) ?? this.offsets.set(at, []).get(at)!).push(r.offset);
    }
    this.next.set(at, batch.next);
  }
  count(at: string): number {
    return this.values.get(at)?.length ?? 0;
  }
}

async function transactional(): Promise<Producer> {
  const producer = kafka.producer({ transactionalId: `it-follow-${randomUUID()}`, idempotent: true, maxInFlightRequests: 1 });
  producers.push(producer);
  await producer.connect();
  return producer;
}

/** One committed and one aborted transaction to every partition of both topics; the committed keys. */
async function produceRound(producer: Producer, round: string): Promise<Map<string, string[]>> {
  const committed = new Map<string, string[]>();
  const aborted = await producer.transaction();
  for (const topic of topics) await aborted.send({ topic, messages: Array.from({ length: PARTITIONS }, (_, p) => ({ partition: p, key: `${round}-gone`, value: 'aborted' })) });
  await aborted.abort();
  const txn = await producer.transaction();
  for (const topic of topics) {
    const messages = Array.from({ length: PARTITIONS }, (_, p) => Array.from({ length: 5 }, (_, i) => ({ partition: p, key: `${round}-${i}`, value: 'y'.repeat(100) }))).flat();
    await txn.send({ topic, messages });
    for (let p = 0; p < PARTITIONS; p++) committed.set(tp(topic, p), Array.from({ length: 5 }, (_, i) => `${round}-${i}=${'y'.repeat(100)}`));
  }
  await txn.commit();
  return committed;
}

const all = (offset: number) => new Map(topics.map((topic) => [topic, new Map(Array.from({ length: PARTITIONS }, (_, p) => [p, offset]))]));

beforeAll(async () => {
  kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: PARTITIONS, replicationFactor: 1 })), waitForLeaders: true });
  await admin.disconnect();
});

afterAll(async () => {
  for (const p of producers) await p.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
});

describe('CommittedFollower (the lean reader, following)', () => {
  it('hands over what is committed while it follows, once each and in order, aborted records left out; a new assignment takes effect; stop ends it', async () => {
    const producer = await transactional();
    const seen = new Seen();
    const follower = new CommittedFollower(options(), async (batch) => seen.add(batch));
    follower.assign(all(0));
    const expected = new Map<string, string[]>();
    for (const round of ['r0', 'r1', 'r2']) {
      for (const [at, values] of await produceRound(producer, round)) expected.set(at, [...(expected.get(at) ?? []), ...values]);
    }
    await waitFor('every committed record', async () => ([...expected].every(([at, values]) => seen.count(at) === values.length) ? true : undefined), 60_000, 100);
    expect(seen.values).toEqual(expected);
    for (const offsets of seen.offsets.values()) expect(offsets).toEqual([...offsets].sort((a, b) => a - b));

    // A new assignment: partition 0 of the first topic dropped, everything else from where it was,
    // partition 2 of the second topic from offset 0 again (read again from there, as a view would after a move).
    const moved = new Map(topics.map((topic) => [topic, new Map(Array.from({ length: PARTITIONS }, (_, p) => [p, seen.next.get(tp(topic, p))!]))]));
    moved.get(topics[0]!)!.delete(0);
    moved.get(topics[1]!)!.set(2, 0);
    const before = new Map([...seen.values].map(([at, values]) => [at, values.length]));
    follower.assign(moved);
    const r3 = await produceRound(producer, 'r3');
    await waitFor('the new assignment read', async () => (seen.count(tp(topics[1]!, 2)) === before.get(tp(topics[1]!, 2))! * 2 + 5 && seen.count(tp(topics[0]!, 1)) === before.get(tp(topics[0]!, 1))! + 5 ? true : undefined), 60_000, 100);
    await sleep(500);
    // Nothing more of the dropped partition; the others got r3 once.
    expect(seen.count(tp(topics[0]!, 0))).toBe(before.get(tp(topics[0]!, 0)));
    for (const [at, values] of r3) {
      if (at === tp(topics[0]!, 0)) continue;
      expect(seen.values.get(at)!.slice(-5)).toEqual(values);
    }
    expect(seen.values.get(tp(topics[1]!, 2))).toEqual([...expected.get(tp(topics[1]!, 2))!, ...expected.get(tp(topics[1]!, 2))!, ...r3.get(tp(topics[1]!, 2))!]);

    await follower.stop();
    const stopped = seen.count(tp(topics[0]!, 1));
    await produceRound(producer, 'r4');
    await sleep(1_000);
    expect(seen.count(tp(topics[0]!, 1))).toBe(stopped);
  });

  it('hands a whole fetch over in one call with deliverFetch, and the whole fetch again when that call failed', async () => {
    const calls: FollowedBatch[][] = [];
    const seen = new Seen();
    const follower = new CommittedFollower(
      {
        ...options(),
        partitionMaxBytes: 1024 * 1024,
        maxBytes: 8 * 1024 * 1024,
        onRetry: () => undefined,
        deliverFetch: async (batches) => {
          calls.push(batches);
          // The first fetch's hand-over fails: all of it comes again.
          if (calls.length === 1) throw new Error('the store is busy');
          for (const batch of batches) seen.add(batch);
        },
      },
      async () => {
        throw new Error('deliver is not called when deliverFetch is given');
      },
    );
    follower.assign(all(0));
    const ends = new Map(await Promise.all(topics.map(async (topic) => [topic, await settledEndOffsets(brokers(), topic)] as const)));
    await waitFor('every partition of both topics read to its end', async () => (topics.every((topic) => [...ends.get(topic)!].every(([p, end]) => (seen.next.get(tp(topic, p)) ?? 0) >= end)) ? true : undefined), 60_000, 100);
    await follower.stop();
    // What the first test committed fits in one fetch: every partition of both topics in one call, twice.
    expect(calls[0]!.map((b) => tp(b.topic, b.partition)).sort()).toEqual(topics.flatMap((topic) => Array.from({ length: PARTITIONS }, (_, p) => tp(topic, p))).sort());
    // The same partitions from the same offsets (in another order: each fetch turns where it starts).
    const firsts = (batches: FollowedBatch[]) => batches.map((b) => `${tp(b.topic, b.partition)}@${b.records[0]?.offset}`).sort();
    expect(firsts(calls[1]!)).toEqual(firsts(calls[0]!));
    for (const topic of topics) {
      for (let p = 0; p < PARTITIONS; p++) {
        const values = seen.values.get(tp(topic, p)) ?? [];
        expect(new Set(values).size, tp(topic, p)).toBe(values.length);
        expect(seen.offsets.get(tp(topic, p))).toEqual([...(seen.offsets.get(tp(topic, p)) ?? [])].sort((a, b) => a - b));
      }
    }
  });

  it('with deferRecords hands batches over in parts of at most that many records, made when read: the same records as made at once, again after release', async () => {
    const eager = new Seen();
    const deferred = new Seen();
    const parts: { at: string; from: number; next: number; count: number; bytes: number; offsets: number[] }[] = [];
    let released = 0;
    const read = (follower: CommittedFollower) => {
      follower.assign(all(0));
      return follower;
    };
    const eagerly = read(new CommittedFollower(options(), async (batch) => eager.add(batch)));
    const lazily = read(
      new CommittedFollower({ ...options(), partitionMaxBytes: 64 * 1024, maxBytes: 256 * 1024, deferRecords: 2 }, async (batch) => {
        if (batch.count > 0) {
          expect(batch.parts, 'a batch with records comes in parts').toBeDefined();
          let from: number | undefined;
          for (const part of batch.parts!) {
            // Consecutive: each part starts where the one before ends, the last ends at the batch's next.
            if (from !== undefined) expect(part.from).toBe(from);
            from = part.next;
            const first = part.records;
            expect(first).toHaveLength(part.count);
            expect(part.records).toBe(first); // made once
            part.release();
            released++;
            const again = part.records;
            expect(again).not.toBe(first); // made again from the fetched bytes
            expect(again.map((r) => [r.offset, r.key?.toString(), r.value?.toString()])).toEqual(first.map((r) => [r.offset, r.key?.toString(), r.value?.toString()]));
            parts.push({ at: tp(batch.topic, batch.partition), from: part.from, next: part.next, count: part.count, bytes: part.bytes, offsets: first.map((r) => r.offset) });
          }
          expect(from).toBe(batch.next);
          expect(batch.parts!.reduce((n, p) => n + p.count, 0)).toBe(batch.count);
          expect(batch.records.reduce((n, r) => n + (r.key?.length ?? 0) + (r.value?.length ?? 0), 0)).toBe(batch.bytes);
        }
        deferred.add(batch);
      }),
    );
    const ends = new Map(await Promise.all(topics.map(async (topic) => [topic, await settledEndOffsets(brokers(), topic)] as const)));
    const done = (seen: Seen) => topics.every((topic) => [...ends.get(topic)!].every(([p, end]) => (seen.next.get(tp(topic, p)) ?? 0) >= end));
    await waitFor('both read every partition to its end', async () => (done(eager) && done(deferred) ? true : undefined), 60_000, 100);
    await Promise.all([eagerly.stop(), lazily.stop()]);
    // The same committed records in the same order (the aborted ones left out either way).
    expect(deferred.values).toEqual(eager.values);
    expect(deferred.offsets).toEqual(eager.offsets);
    expect(released).toBeGreaterThan(0);
    for (const part of parts) {
      expect(part.count).toBeGreaterThan(0);
      expect(part.count).toBeLessThanOrEqual(2);
      for (const offset of part.offsets) expect(Number(offset) >= part.from && Number(offset) < part.next, `${part.at}@${offset} in [${part.from}, ${part.next})`).toBe(true);
    }
  });

  it('hands a batch over again when its hand-over failed: nothing skipped, nothing twice', async () => {
    const seen = new Seen();
    let failures = 0;
    const follower = new CommittedFollower({ ...options(), onRetry: () => undefined }, async (batch) => {
      // Every third hand-over fails before it is applied.
      if (batch.records.length > 0 && ++failures % 3 === 0) throw new Error('the store is busy');
      seen.add(batch);
    });
    const topic = topics[0]!;
    follower.assign(new Map([[topic, new Map(Array.from({ length: PARTITIONS }, (_, p) => [p, 0]))]]));
    // Partition 1 of the first topic, as the broker has it committed (the test above wrote it).
    const ends = await settledEndOffsets(brokers(), topic);
    await waitFor('every partition read to its end', async () => ([...ends].every(([p, end]) => (seen.next.get(tp(topic, p)) ?? 0) >= end) ? true : undefined), 60_000, 100);
    await follower.stop();
    expect(failures).toBeGreaterThan(3);
    for (let p = 0; p < PARTITIONS; p++) {
      const values = seen.values.get(tp(topic, p))!;
      // 5 rounds of 5 committed records each, every one once.
      expect(values).toHaveLength(25);
      expect(new Set(values).size).toBe(25);
      expect(seen.offsets.get(tp(topic, p))).toEqual([...seen.offsets.get(tp(topic, p))!].sort((a, b) => a - b));
    }
  });

  it("fetches no more than the receiver's room: a receiver that takes nothing holds at most its room and one fetch's overshoot, and everything arrives once it takes", async () => {
    const topic = uniqueName('it_follow_room');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    producers.push(producer);
    await producer.connect();
    // 3,000 records of 1,000 bytes in batches of 50, over two partitions.
    const value = 'v'.repeat(1_000);
    for (let i = 0; i < 30; i++) {
      await producer.send({ topic, messages: Array.from({ length: 100 }, (_, j) => ({ partition: j % 2, key: String(i * 100 + j), value })) });
    }
    const ROOM = 500;
    let held: FollowedBatch[] = [];
    let heldRecords = 0;
    let mostHeld = 0;
    let freed: () => void = () => undefined;
    let freedPromise = new Promise<void>((resolve) => (freed = resolve));
    const seen = new Seen();
    // Limits far above the room: without it, one fetch would bring a thousand records or more.
    const follower = new CommittedFollower(
      {
        ...options(),
        partitionMaxBytes: 2 * 1024 * 1024,
        maxBytes: 4 * 1024 * 1024,
        room: { records: () => ROOM - heldRecords, freed: () => freedPromise },
      },
      async (batch) => {
        held.push(batch);
        heldRecords += batch.records.length;
        mostHeld = Math.max(mostHeld, heldRecords);
      },
    );
    follower.assign(new Map([[topic, new Map([[0, 0], [1, 0]])]]));
    await waitFor('the room filled', async () => (heldRecords >= ROOM ? true : undefined), 60_000, 50);
    // Nothing more comes while the receiver takes nothing.
    await sleep(1_500);
    const perFetch = Math.ceil(MIN_FETCH_BYTES / 1_000) + 50;
    expect(mostHeld).toBeLessThanOrEqual(ROOM + perFetch);
    // The receiver takes, a few times: the rest arrives, once each and in order.
    const take = () => {
      for (const batch of held) seen.add(batch);
      held = [];
      heldRecords = 0;
      freed();
      freedPromise = new Promise<void>((resolve) => (freed = resolve));
    };
    await waitFor('every record', async () => {
      take();
      return seen.count(tp(topic, 0)) + seen.count(tp(topic, 1)) === 3_000 ? true : undefined;
    }, 60_000, 200);
    await follower.stop();
    expect(mostHeld).toBeLessThanOrEqual(ROOM + perFetch);
    for (const p of [0, 1]) {
      const keys = seen.values.get(tp(topic, p))!.map((kv) => Number(kv.split('=')[0]));
      expect(keys).toEqual(Array.from({ length: 1_500 }, (_, i) => Math.floor(i / 50) * 100 + (i % 50) * 2 + p));
      expect(seen.offsets.get(tp(topic, p))).toEqual(Array.from({ length: 1_500 }, (_, i) => i));
    }
  });
});
