/**
 * Transactions as the services make them, on the real broker: what each costs in requests.
 * - The lean transactional producer looks its coordinators and leaders up once.
 * - The exactly-once runner sends a transaction's offsets alongside its records, and
 *   COMMIT_INTERVAL_MS spaces a stage's transactions.
 * - A stateful stage applies its own outputs in its slot within the transaction (applyOwnOutputs),
 *   and a group can take over another group's committed offsets.
 */
import { randomUUID } from 'node:crypto';
import {
  APPLIED_HEADER,
  createLogger,
  partitionFor,
  readPartitionsToEnd,
  readStableOffsets,
  restoreAll,
  runStateful,
  runTransform,
  ServiceMetrics,
  slotOf,
  TOPICS,
  type ConsumedRecord,
  observeStageRequests,
  stageProducer,
  type Kafka,
  type ObservedRequest,
  type RunningConsumer,
  type StageProducer,
  type TransformOptions,
} from '@tradeflow/shared';
import { leanClient } from '../../packages/shared/src/kafka.ts';
import { fetchGroupOffsets } from '../../packages/shared/src/wire/group-offsets.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FENCED, isAny } from '../../packages/shared/src/runner/retry.ts';
import { readTopic, resetTopics, sleep, testKafka, uniqueName, waitFor } from './helpers.ts';

let kafka: Kafka;

beforeEach(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A Kafka client whose stage producers (the runner makes its own) report every request they make. */
function observed(base: Kafka, requests: ObservedRequest[]): Kafka {
  observeStageRequests(base, (request) => requests.push(request));
  return base;
}

/** Copies ticks to prices unchanged, exactly once, the way the services run their stages. */
async function copyStage(
  stageKafka: Kafka,
  commitIntervalMs: number,
  metrics: ServiceMetrics,
  group = uniqueName('it-runner'),
  more: Partial<Pick<TransformOptions, 'transactionStreamMs' | 'maxRecordsPerTransaction' | 'maxBytesPerPartition' | 'handle'>> = {},
): Promise<RunningConsumer> {
  const consumer = await runTransform({
    kafka: stageKafka,
    logger: createLogger('it-runner', 'error'),
    metrics,
    groupId: group,
    topics: [TOPICS.ticks],
    transactionalIdPrefix: group,
    fetchMaxWaitMs: 50,
    commitIntervalMs,
    handle: (records) => records.map((r) => ({ topic: TOPICS.prices, key: r.key?.toString() ?? null, value: r.value?.toString() ?? '' })),
    ...more,
  });
  cleanups.push(() => consumer.stop());
  return consumer;
}

/** `count` records b0, b1 … on one partition of ticks, in order, sent as one backlog. */
async function produceBacklog(count: number): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < count; i += 500) {
      await producer.send({ topic: TOPICS.ticks, messages: Array.from({ length: Math.min(500, count - i) }, (_, j) => ({ key: 'IVE', value: `b${i + j}` })) });
    }
  } finally {
    await producer.disconnect();
  }
}

async function produceSpaced(count: number, everyMs: number, prefix = 't', after?: (sent: number) => Promise<unknown>): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < count; i++) {
      await producer.send({ topic: TOPICS.ticks, messages: [{ key: 'IVE', value: `${prefix}${i}` }] });
      await sleep(everyMs);
      await after?.(i + 1);
    }
  } finally {
    await producer.disconnect();
  }
}

/** A stage producer with a transactional id of its own, connected (and disconnected after the test). */
async function openStageProducer(transactionalId = `it-${randomUUID()}`): Promise<StageProducer> {
  const producer = stageProducer(testKafka(), transactionalId, 60_000);
  cleanups.push(() => producer.disconnect());
  await producer.connect();
  return producer;
}

describe('a stage producer: committed offsets read by a new slot owner', () => {
  it('wait for offsets an open transaction holds and then read them; a plain read answers "none" meanwhile', async () => {
    const group = uniqueName('it-stable');
    const producer = await openStageProducer();
    // The group's first offsets ever for ticks-0 and ticks-1, in a transaction left open.
    const transaction = await producer.transaction();
    await transaction.send([{ topic: TOPICS.prices, key: 'IVE', value: 'v' }]);
    await transaction.sendOffsets({ groupId: group, topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset: '5' }, { partition: 1, offset: '7' }] }] });

    // Without require_stable the coordinator answers with what it had settled: nothing yet. A
    // new owner reading this would process ticks-0 and ticks-1 from the start again.
    const plain = await fetchGroupOffsets(leanClient(kafka), group, [{ topic: TOPICS.ticks, partitions: [0, 2] }], false);
    expect(plain).toEqual(new Map([[`${TOPICS.ticks}-0`, -1n], [`${TOPICS.ticks}-2`, -1n]]));
    // Asked for stable offsets, the coordinator names the partition the open transaction holds.
    await expect(fetchGroupOffsets(leanClient(kafka), group, [{ topic: TOPICS.ticks, partitions: [0] }], true)).rejects.toMatchObject({ type: 'UNSTABLE_OFFSET_COMMIT' });

    let settled = false;
    const stable = readStableOffsets(kafka, group, [TOPICS.ticks], ({ partition }) => partition === 0 || partition === 2).finally(() => {
      settled = true;
    });
    // It keeps asking while the transaction is open, however long that takes.
    await sleep(1_500);
    expect(settled).toBe(false);
    await transaction.commit();
    // Only the partitions asked for, at the offsets the transaction committed (none for ticks-2).
    expect(await stable).toEqual(new Map([[`${TOPICS.ticks}-0`, 5n], [`${TOPICS.ticks}-2`, 0n]]));
    expect(await fetchGroupOffsets(leanClient(kafka), group, [{ topic: TOPICS.ticks, partitions: [0, 1, 2] }], true)).toEqual(
      new Map([[`${TOPICS.ticks}-0`, 5n], [`${TOPICS.ticks}-1`, 7n], [`${TOPICS.ticks}-2`, -1n]]),
    );
  });
});

describe('a stage producer: offsets committed in a transaction for a group member (KIP-447)', () => {
  it("are refused for a generation or member the group does not have now, and accepted for the current one", async () => {
    const group = uniqueName('it-generation');
    const consumer = kafka.consumer({ groupId: group, sessionTimeout: 30_000, heartbeatInterval: 3_000 });
    cleanups.push(() => consumer.disconnect());
    let joined: { generationId: number; memberId: string } | undefined;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => (joined = { generationId: payload.generationId, memberId: payload.memberId }));
    await consumer.connect();
    await consumer.subscribe({ topics: [TOPICS.ticks], fromBeginning: true });
    await consumer.run({ eachBatch: async () => undefined });
    const member = await waitFor('the consumer to join', async () => joined, 60_000, 50);
    expect(member.generationId).toBeGreaterThan(0);

    // A producer per attempt: right after an abort the coordinator answers CONCURRENT_TRANSACTIONS for a while.
    const commitAs = async (member: { generationId: number; memberId: string }, offset: string) => {
      const producer = await openStageProducer();
      const transaction = await producer.transaction();
      try {
        await transaction.sendOffsets({ groupId: group, member, topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset }] }] });
        await transaction.commit();
      } catch (error) {
        await transaction.abort();
        throw error;
      }
    };
    await expect(commitAs({ generationId: member.generationId - 1, memberId: member.memberId }, '3')).rejects.toMatchObject({ type: 'ILLEGAL_GENERATION' });
    await expect(commitAs({ generationId: member.generationId, memberId: 'someone-else' }, '4')).rejects.toMatchObject({ type: 'UNKNOWN_MEMBER_ID' });
    // The consumer may have joined again meanwhile, several times on a busy machine (the group
    // settling after the topics were created; three joins in 250 ms are usual here, and one run in
    // CI saw more than ten): the member's generation as of now is accepted. A refusal is retried
    // only once the consumer has joined a newer generation, so a generation that does not change
    // and is refused fails the test.
    const tried: number[] = [];
    for (;;) {
      const now = joined!;
      tried.push(now.generationId);
      try {
        await commitAs(now, '5');
        break;
      } catch (error) {
        if ((error as { type?: string }).type !== 'ILLEGAL_GENERATION') throw error;
        await waitFor(`the consumer to join a generation after ${tried.join(', ')} (each refused)`, async () => (joined!.generationId > now.generationId ? true : undefined), 60_000, 50);
      }
    }
    expect(await readStableOffsets(kafka, group, [TOPICS.ticks], ({ partition }) => partition === 0)).toEqual(new Map([[`${TOPICS.ticks}-0`, 5n]]));
  });
});

describe('a stage producer', () => {
  it('commits records (keys, values, tombstones, headers) and offsets together; an aborted transaction is never read', async () => {
    const producer = await openStageProducer();
    const group = uniqueName('it-txn');
    const aborted = await producer.transaction();
    await aborted.send([{ topic: TOPICS.prices, key: 'IVE', value: 'aborted' }]);
    await aborted.sendOffsets({ groupId: group, topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset: '99' }] }] });
    await aborted.abort();
    const committed = await producer.transaction();
    await committed.send([
      { topic: TOPICS.prices, key: 'IVE', value: 'one', headers: { h: 'x', b: Buffer.from([1, 2]) } },
      { topic: TOPICS.prices, key: 'IVE', value: null },
      { topic: TOPICS.prices, key: Buffer.from('IVE'), value: Buffer.from('three'), partition: 2 },
    ]);
    await committed.sendOffsets({ groupId: group, topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset: '3' }] }] });
    await committed.commit();
    const records = await readTopic(kafka, TOPICS.prices, 3);
    const keyPartition = partitionFor({ topic: TOPICS.prices, key: 'IVE', value: null }, 6);
    // In offset order within a partition (a sort by partition keeps it); the tombstone reads as no bytes.
    expect(records.map((r) => [r.partition, r.key, r.value.toString()]).sort((a, b) => (a[0] as number) - (b[0] as number))).toEqual(
      [[keyPartition, 'IVE', 'one'], [keyPartition, 'IVE', ''], [2, 'IVE', 'three']].sort((a, b) => (a[0] as number) - (b[0] as number)),
    );
    expect(records.find((r) => r.value.toString() === 'one')!.headers).toEqual({ h: 'x', b: '\u0001\u0002' });
    expect(await readStableOffsets(kafka, group, [TOPICS.ticks], ({ partition }) => partition === 0)).toEqual(new Map([[`${TOPICS.ticks}-0`, 3n]]));
  });

  it('is fenced by a producer opened later with the same transactional id, whose InitProducerId aborts the transaction it left open', async () => {
    const id = `it-${randomUUID()}`;
    const first = await openStageProducer(id);
    const open = await first.transaction();
    await open.send([{ topic: TOPICS.prices, key: 'IVE', value: 'left open' }]);
    const second = await openStageProducer(id);
    const fenced = await (async () => {
      try {
        await open.send([{ topic: TOPICS.prices, key: 'IVE', value: 'zombie' }]);
        await open.commit();
        return undefined;
      } catch (error) {
        return error;
      }
    })();
    expect(isAny(fenced, FENCED), `fenced with ${String(fenced)} ${JSON.stringify(fenced)}`).toBe(true);
    const next = await second.transaction();
    await next.send([{ topic: TOPICS.prices, key: 'IVE', value: 'after' }]);
    await next.commit();
    expect((await readTopic(kafka, TOPICS.prices, 1)).map((r) => r.value.toString())).toEqual(['after']);
  });

  it("sends a partition's records in several batches when they are more than one batch may hold, in order", async () => {
    const producer = await openStageProducer();
    const transaction = await producer.transaction();
    // About 3 MB for one partition: more than a broker takes in one batch (message.max.bytes, 1 MiB).
    const values = Array.from({ length: 6_000 }, (_, i) => `${i}:${'x'.repeat(500)}`);
    await transaction.send(values.map((value) => ({ topic: TOPICS.prices, key: 'IVE', value })));
    await transaction.send([{ topic: TOPICS.prices, key: 'IVE', value: 'last' }]);
    await transaction.commit();
    const records = await readTopic(kafka, TOPICS.prices, values.length + 1);
    expect(records.map((r) => r.value.toString())).toEqual([...values, 'last']);
  });
});

describe('the lean transactional producer', () => {
  // The Kafka client's own lookups are the test "transactional producer" above.
  it('looks its coordinators and leaders up once, not before every transaction', async () => {
    const requests: ObservedRequest[] = [];
    const client = testKafka();
    observeStageRequests(client, (request) => requests.push(request));
    const producer = stageProducer(client, `it-${randomUUID()}`, 60_000);
    cleanups.push(() => producer.disconnect());
    await producer.connect();
    const transact = async (i: number) => {
      const transaction = await producer.transaction();
      await transaction.send([{ topic: TOPICS.prices, key: 'IVE', value: `v${i}` }]);
      await transaction.sendOffsets({ groupId: 'it-client', topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset: String(i + 1) }] }] });
      await transaction.commit();
    };
    await transact(0);
    requests.length = 0;
    const TRANSACTIONS = 20;
    for (let i = 1; i <= TRANSACTIONS; i++) await transact(i);
    const count = (apiName: string) => requests.filter((r) => r.apiName === apiName).length;
    expect(count('FindCoordinator') + count('GroupCoordinator')).toBe(0);
    expect(count('Metadata')).toBe(0);
    // AddPartitionsToTxn right after a commit may be answered CONCURRENT_TRANSACTIONS and retried.
    expect(count('AddPartitionsToTxn')).toBeGreaterThanOrEqual(TRANSACTIONS);
    expect(count('Produce')).toBe(TRANSACTIONS);
    expect(count('AddOffsetsToTxn')).toBeGreaterThanOrEqual(TRANSACTIONS);
    expect(count('TxnOffsetCommit')).toBe(TRANSACTIONS);
    expect(count('EndTxn')).toBe(TRANSACTIONS);
    expect((await readTopic(kafka, TOPICS.prices, TRANSACTIONS + 1)).map((r) => r.value?.toString()).sort()).toEqual(Array.from({ length: TRANSACTIONS + 1 }, (_, i) => `v${i}`).sort());
  });
});

describe('exactly-once runner', () => {

  it("adds a transaction's offsets while it produces its records", async () => {
    const requests: ObservedRequest[] = [];
    const metrics = new ServiceMetrics('it-runner');
    await copyStage(observed(kafka, requests), 0, metrics);
    // Once the stage has copied a first record (it is in its group, its producer open), records
    // one by one: a transaction each.
    await produceSpaced(1, 0, 'warm-up');
    await readTopic(kafka, TOPICS.prices, 1);
    // Each record once the one before is committed (the runner counts a record consumed then), so
    // that each is a transaction of its own however slow the machine is.
    await produceSpaced(20, 0, 't', (sent) => waitFor(`record ${sent} committed`, async () => (metrics.consumed >= sent + 1 ? true : undefined), 60_000, 10));
    const copied = await readTopic(kafka, TOPICS.prices, 21);
    expect(copied.map((r) => r.value?.toString()).sort()).toEqual(['warm-up0', ...Array.from({ length: 20 }, (_, i) => `t${i}`)].sort());

    // Sent one after the other, a transaction's requests go AddOffsetsToTxn, TxnOffsetCommit,
    // AddPartitionsToTxn, Produce, EndTxn. Here AddPartitionsToTxn goes out while the offsets are
    // being added: before TxnOffsetCommit (correlation ids number a connection's requests in the
    // order they are sent). From the second transaction on: the first also looks up the topic's
    // metadata and the group's coordinator.
    const ends = requests.filter((r) => r.apiName === 'EndTxn').sort((a, b) => a.correlationId - b.correlationId);
    expect(ends.length).toBeGreaterThanOrEqual(21);
    let previous = ends[0]!.correlationId;
    for (const end of ends.slice(1)) {
      const inTransaction = requests.filter((r) => r.correlationId > previous && r.correlationId < end.correlationId);
      const first = (apiName: string) => Math.min(...inTransaction.filter((r) => r.apiName === apiName).map((r) => r.correlationId));
      expect(first('AddPartitionsToTxn')).toBeLessThan(first('TxnOffsetCommit'));
      expect(first('AddOffsetsToTxn')).toBeLessThan(first('TxnOffsetCommit'));
      previous = end.correlationId;
    }
  });

  it('with COMMIT_INTERVAL_MS, starts transactions no closer together and loses or repeats nothing', async () => {
    const INTERVAL = 400;
    const requests: ObservedRequest[] = [];
    const metrics = new ServiceMetrics('it-runner');
    await copyStage(observed(kafka, requests), INTERVAL, metrics);
    // 40 records one by one over about 2 s: without the interval nearly each is a transaction.
    const started = Date.now();
    await produceSpaced(40, 50);
    const copied = await readTopic(kafka, TOPICS.prices, 40);
    const elapsed = Date.now() - started;
    expect(copied.map((r) => r.value?.toString()).sort()).toEqual(Array.from({ length: 40 }, (_, i) => `t${i}`).sort());
    await waitFor('the last transaction', async () => (metrics.consumed === 40 ? true : undefined), 60_000);

    const ends = requests.filter((r) => r.apiName === 'EndTxn');
    expect(ends.length).toBeGreaterThan(0);
    // The runner starts a lane's transactions at least INTERVAL apart, and all of them start within
    // `elapsed`: so no more than elapsed / INTERVAL + 1 (about 7 here; without the interval about 40).
    // The gaps are not checked one by one from the requests' times: a request is created some time
    // after its transaction started, and a loaded machine makes that delay anything (one run saw a
    // gap of 394 ms between two transactions' AddOffsetsToTxn requests). Being late only makes the
    // count smaller, so this bound holds however busy the machine is.
    expect(ends.length).toBeLessThanOrEqual(Math.ceil(elapsed / INTERVAL) + 1);
  });

  it('streaming (transactionStreamMs): a transaction takes its lane a piece at a time, several pieces each, and a backlog is copied exactly once', async () => {
    const requests: ObservedRequest[] = [];
    const metrics = new ServiceMetrics('it-runner');
    await produceBacklog(3_000);
    await copyStage(observed(kafka, requests), 0, metrics, uniqueName('it-runner'), { transactionStreamMs: 5_000, maxRecordsPerTransaction: 100 });
    const copied = await readTopic(kafka, TOPICS.prices, 3_000);
    expect(copied.map((r) => r.value.toString()).sort()).toEqual(Array.from({ length: 3_000 }, (_, i) => `b${i}`).sort());
    await waitFor('the last transaction', async () => (metrics.consumed === 3_000 ? true : undefined), 30_000);
    // 30 pieces of 100 records; a transaction commits once its lane has nothing queued or 5 s passed.
    const ends = requests.filter((r) => r.apiName === 'EndTxn').length;
    const produces = requests.filter((r) => r.apiName === 'Produce').length;
    expect(ends).toBeGreaterThan(0);
    expect(ends).toBeLessThan(30);
    expect(produces).toBeGreaterThan(ends);
  });

  it('streaming: a lane queues a few pieces, not the backlog, before fetching waits, and the backlog is copied exactly once', async () => {
    const metrics = new ServiceMetrics('it-runner');
    await produceBacklog(3_000);
    await copyStage(kafka, 0, metrics, uniqueName('it-runner'), {
      transactionStreamMs: 200,
      maxRecordsPerTransaction: 100,
      // Small batches (two of the backlog's produce batches of 500 at most), so the bound in records holds the queue.
      maxBytesPerPartition: 16 * 1024,
      handle: async (records) => {
        await sleep(20);
        return records.map((r) => ({ topic: TOPICS.prices, key: r.key?.toString() ?? null, value: r.value?.toString() ?? '' }));
      },
    });
    const copied = await readTopic(kafka, TOPICS.prices, 3_000);
    expect(copied.map((r) => r.value.toString()).sort()).toEqual(Array.from({ length: 3_000 }, (_, i) => `b${i}`).sort());
    const batchPeak = metrics.extra['batch_records_peak']!;
    expect(batchPeak).toBeGreaterThan(0);
    expect(batchPeak).toBeLessThanOrEqual(1_000);
    // QUEUED_TAKES (4) pieces of 100, and the batch that crossed the bound (one partition). Bounded
    // in bytes only, the lane would have queued the whole backlog (3,000 records of 8 bytes).
    expect(metrics.extra['queued_records_peak']).toBeLessThanOrEqual(4 * 100 + batchPeak);
  });

  it('streaming: a transaction that fails in a later piece is aborted, and what it took is fetched again: nothing lost or repeated', async () => {
    const metrics = new ServiceMetrics('it-runner');
    await produceBacklog(2_000);
    let failures = 0;
    await copyStage(kafka, 0, metrics, uniqueName('it-runner'), {
      transactionStreamMs: 10_000,
      maxRecordsPerTransaction: 100,
      handle: (records) => {
        // Once, in a piece after the first: its transaction has sent earlier pieces' records.
        if (failures === 0 && records.some((r) => r.value?.toString() === 'b1234')) {
          failures++;
          throw new Error('injected failure in a later piece');
        }
        return records.map((r) => ({ topic: TOPICS.prices, key: r.key?.toString() ?? null, value: r.value?.toString() ?? '' }));
      },
    });
    const copied = await readTopic(kafka, TOPICS.prices, 2_000);
    await sleep(2_000);
    const settled = await readTopic(kafka, TOPICS.prices, 2_000);
    expect(failures).toBe(1);
    // Not retried in place (that counts a retry): given up, and fetched again.
    expect(metrics.retries).toBe(0);
    expect(settled.length).toBe(copied.length);
    expect(settled.map((r) => r.value.toString()).sort()).toEqual(Array.from({ length: 2_000 }, (_, i) => `b${i}`).sort());
  });

  it('streaming: a member joining while a transaction takes piece after piece (its partitions fetched again from the committed offsets) repeats nothing', async () => {
    const group = uniqueName('it-runner');
    const metrics = new ServiceMetrics('it-runner');
    await produceBacklog(3_000);
    const slow = {
      transactionStreamMs: 60_000,
      maxRecordsPerTransaction: 100,
      // 100 ms a piece: the 30 pieces of the backlog take 3 s, and the join comes in the middle.
      handle: async (records: readonly ConsumedRecord[]) => {
        await sleep(100);
        return records.map((r) => ({ topic: TOPICS.prices, key: r.key?.toString() ?? null, value: r.value?.toString() ?? '' }));
      },
    };
    const handled = { count: 0 };
    await copyStage(kafka, 0, metrics, group, { ...slow, handle: async (records) => ((handled.count += records.length), slow.handle(records)) });
    // The first transaction is some pieces in (it commits after 60 s or once the lane is empty).
    await waitFor('the first transaction to be a few pieces in', async () => (handled.count >= 300 ? true : undefined), 120_000, 20);
    // A second member: the group rebalances, and a member keeping its partitions fetches them again
    // from the committed offsets, below what the transaction in hand took.
    await copyStage(kafka, 0, new ServiceMetrics('it-runner'), group, slow);
    const copied = await readTopic(kafka, TOPICS.prices, 3_000, 180_000);
    await sleep(3_000);
    const settled = await readTopic(kafka, TOPICS.prices, 3_000);
    expect(settled.length).toBe(copied.length);
    expect(settled.map((r) => r.value.toString()).sort()).toEqual(Array.from({ length: 3_000 }, (_, i) => `b${i}`).sort());
  });

  it('stops at once while a transaction waits for its commit interval, and the record is not lost', async () => {
    const group = uniqueName('it-runner');
    const metrics = new ServiceMetrics('it-runner');
    const waiting = await copyStage(kafka, 60_000, metrics, group);
    await produceSpaced(1, 0, 'first');
    await readTopic(kafka, TOPICS.prices, 1);
    // The second record waits for the first transaction's 60 s interval to pass.
    await produceSpaced(1, 0, 'second');
    await sleep(1_000);
    expect(metrics.consumed).toBe(1);
    const stopping = Date.now();
    await waiting.stop();
    // Well short of the 60 s interval it would otherwise wait out (with room for a loaded machine).
    expect(Date.now() - stopping).toBeLessThan(45_000);

    // A new member of the group picks the uncommitted record up, exactly once.
    await copyStage(kafka, 0, new ServiceMetrics('it-runner'), group);
    const copied = await readTopic(kafka, TOPICS.prices, 2);
    expect(copied.map((r) => r.value.toString())).toEqual(['first0', 'second0']);
  });
});

/** The state of one task in the applyOwnOutputs test: what it applied, and how many of those in the transaction that produced them. */
interface Tally {
  count: number;
  inline: number;
}

describe('stateful stage applying its own outputs', () => {
  it('applies outputs in its own slot at once (marked), the others when read, each exactly once', async () => {
    const group = uniqueName('it-own');
    const COUNT = 400;
    // ticks → prices (keyed to spread over the partitions) → a tally per partition; prices is both
    // an input and the handler's output. With 2 slots, about half the outputs stay in the slot
    // that produced them.
    const stage = await runStateful<Tally>({
      kafka,
      logger: createLogger('it-own', 'error'),
      metrics: new ServiceMetrics('it-own'),
      groupId: group,
      topics: [TOPICS.ticks, TOPICS.prices],
      transactionalIdPrefix: group,
      changelogTopic: TOPICS.matcherState,
      applyOwnOutputs: TOPICS.prices,
      slots: 2,
      fetchMaxWaitMs: 50,
      handler: {
        restore: restoreAll((entries) => {
          const tally: Tally = { count: 0, inline: 0 };
          for (const { key, value } of entries) if ((key === 'count' || key === 'inline') && value !== null) tally[key] = Number(value.toString());
          return tally;
        }),
        process: (tally, records, source) => {
          if (source.topic === TOPICS.ticks) {
            return { outputs: records.map((r) => ({ topic: TOPICS.prices, key: `k-${r.value!.toString()}`, value: r.value! })), changelog: [] };
          }
          for (const record of records) {
            tally.count++;
            if (record.offset === '-1') tally.inline++;
          }
          const changelog = [
            { key: 'count', value: Buffer.from(String(tally.count)) },
            { key: 'inline', value: Buffer.from(String(tally.inline)) },
            ...records.map((r) => ({ key: `seen:${r.value!.toString()}`, value: Buffer.from('1') })),
          ];
          return { outputs: [], changelog };
        },
      },
    });
    cleanups.push(() => stage.stop());
    // Idempotent: right after the topics are created some partitions may not have a leader yet,
    // and a plain producer retries the whole request, writing the partitions that took it twice.
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic: TOPICS.ticks, messages: Array.from({ length: COUNT }, (_, i) => ({ key: `t${i % 7}`, value: `v${i}` })) });
    await producer.disconnect();

    const outputs = await readTopic(kafka, TOPICS.prices, COUNT);
    const admin = kafka.admin();
    await admin.connect();
    const partitionCount = (await admin.fetchTopicMetadata({ topics: [TOPICS.ticks] })).topics[0]!.partitions.length;
    await admin.disconnect();
    // Marked exactly when the output's partition is in the slot (p mod 2) of the tick it came from.
    let marked = 0;
    for (const output of outputs) {
      const i = Number(output.value.toString().slice(1));
      const tickPartition = partitionFor({ topic: TOPICS.ticks, key: `t${i % 7}`, value: output.value }, partitionCount);
      const sameSlot = slotOf(tickPartition, 2) === slotOf(output.partition, 2);
      expect(output.headers[APPLIED_HEADER] === group, `v${i}`).toBe(sameSlot);
      if (sameSlot) marked++;
    }
    expect(marked).toBeGreaterThan(0);
    expect(marked).toBeLessThan(COUNT);
    const tallies = async () => {
      const changelog = await readPartitionsToEnd(kafka, TOPICS.matcherState, Array.from({ length: partitionCount }, (_, p) => p), group);
      let count = 0;
      let inline = 0;
      const seen = new Set<string>();
      for (const entries of changelog.values()) {
        const last = new Map(entries.map((e) => [e.key, e.value?.toString()]));
        count += Number(last.get('count') ?? 0);
        inline += Number(last.get('inline') ?? 0);
        for (const key of last.keys()) if (key.startsWith('seen:')) seen.add(key);
      }
      return { count, inline, seen: seen.size };
    };
    await waitFor('every output applied', async () => ((await tallies()).count >= COUNT ? true : undefined), 60_000, 200);
    await sleep(1_000);
    const final = await tallies();
    expect(final.count).toBe(COUNT);
    expect(final.seen).toBe(COUNT);
    expect(final.inline).toBe(marked);
    // The marked records are left out when read back (no record is made for them), and their offsets
    // are committed all the same: every partition of prices is committed to its end (but for the
    // last transaction's marker, which a fetch may bring alone).
    const offsetsAdmin = kafka.admin();
    cleanups.push(() => offsetsAdmin.disconnect());
    await offsetsAdmin.connect();
    const behind = async () => {
      const committed = await readStableOffsets(kafka, group, [TOPICS.prices], () => true);
      const ends = await offsetsAdmin.fetchTopicOffsets(TOPICS.prices);
      return ends.filter(({ partition, high }) => BigInt(high) - (committed.get(`${TOPICS.prices}-${partition}`) ?? 0n) > 1n).map(({ partition, high }) => `${partition}: ${committed.get(`${TOPICS.prices}-${partition}`)} of ${high}`);
    };
    await waitFor('the offsets of every partition of prices committed', async () => ((await behind()).length === 0 ? true : undefined), 60_000, 200).catch(async () => {
      throw new Error(`prices partitions behind: ${(await behind()).join(', ')}`);
    });
  });
});
