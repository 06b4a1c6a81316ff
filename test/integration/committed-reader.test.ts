/**
 * The lean reader of committed records (packages/shared/src/wire) on the real broker: it reads what
 * a read_committed consumer of the Kafka client reads, record for record, with transactions of two
 * producers interleaved and aborted, compressed batches, small fetches, a range in the middle, and a
 * transaction still open when the read starts; it names a topic that does not exist.
 */
import { randomUUID } from 'node:crypto';
import { CompressionTypes, createKafka, createLogger, kafkaEnv, parseEnv, readCommitted, readPartitionsToEnd, type Kafka, type Producer } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokers, sleep, testKafka, uniqueName } from './helpers.ts';
import { settledEndOffsets } from './end-offsets.ts';

let kafka: Kafka;
const topic = uniqueName('it_wire');
const PARTITIONS = 3;
const producers: Producer[] = [];
/** What each partition holds committed, in order: key=value. */
const expected = new Map<number, string[]>(Array.from({ length: PARTITIONS }, (_, p) => [p, []]));

const options = () => ({ brokers: brokers().split(','), clientId: 'it-wire', partitionMaxBytes: 1024, maxBytes: 2048, maxWaitMs: 50 });
const message = (partition: number, key: string, value: string) => ({ partition, key, value });

async function transactional(): Promise<Producer> {
  const producer = kafka.producer({ transactionalId: `it-wire-${randomUUID()}`, idempotent: true, maxInFlightRequests: 1 });
  producers.push(producer);
  await producer.connect();
  return producer;
}

async function readAll(ranges: { partition: number; start: number; end: number }[]): Promise<Map<number, string[]>> {
  const seen = new Map<number, string[]>(ranges.map((r) => [r.partition, []]));
  const lastOffset = new Map<number, number>();
  await readCommitted(options(), topic, ranges, (partition, offset, data, ks, kl, vs, vl) => {
    // each partition's records in order of offset
    expect(offset).toBeGreaterThan(lastOffset.get(partition) ?? -1);
    lastOffset.set(partition, offset);
    seen.get(partition)!.push(`${data.toString('utf8', ks, ks + kl)}=${vl < 0 ? 'null' : data.toString('utf8', vs, vs + vl)}`);
  });
  return seen;
}

/** Not admin.fetchTopicOffsets right after a commit: that end may stop before the last transaction (end-offsets.ts). */
const ends = () => settledEndOffsets(brokers(), topic);

/** The read_committed ends as they are now (they stop before an open transaction). */
async function lastStableOffsets(): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]));
  } finally {
    await admin.disconnect();
  }
}

beforeAll(async () => {
  kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const [a, b] = [await transactional(), await transactional()];
  const plain = kafka.producer();
  producers.push(plain);
  await plain.connect();
  const pad = 'x'.repeat(150); // a few records per 1 KiB fetch
  for (let round = 0; round < 6; round++) {
    const ta = await a.transaction();
    const tb = await b.transaction();
    const each = (make: (p: number) => { partition: number; key: string; value: string }) => Array.from({ length: PARTITIONS }, (_, p) => make(p));
    await ta.send({ topic, messages: each((p) => message(p, `a${round}p${p}-1`, pad)), compression: round % 2 === 0 ? CompressionTypes.GZIP : CompressionTypes.None });
    await tb.send({ topic, messages: each((p) => message(p, `b${round}p${p}`, pad)) });
    await plain.send({ topic, messages: each((p) => message(p, `plain${round}p${p}`, `${round}`)) });
    await ta.send({ topic, messages: each((p) => message(p, `a${round}p${p}-2`, `${round}`)) });
    // b aborts every other round, a always commits; they interleave in every partition
    if (round % 2 === 0) await tb.abort();
    else await tb.commit();
    await ta.commit();
    for (let p = 0; p < PARTITIONS; p++) {
      const list = expected.get(p)!;
      // In offset order: a's first record, b's, plain, a's second; b's gone when aborted.
      list.push(`a${round}p${p}-1=${pad}`);
      if (round % 2 === 1) list.push(`b${round}p${p}=${pad}`);
      list.push(`plain${round}p${p}=${round}`);
      list.push(`a${round}p${p}-2=${round}`);
    }
  }
});

afterAll(async () => {
  for (const p of producers) await p.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
});

describe('readCommitted (the lean reader)', () => {
  it('reads every committed record and none of the aborted ones, as the Kafka client does', async () => {
    const end = await ends();
    const seen = await readAll([...end].sort(([a], [b]) => a - b).map(([partition, e]) => ({ partition, start: 0, end: e })));
    expect(seen).toEqual(expected);
    // The same as a read_committed consumer of the Kafka client.
    const byClient = createKafka(parseEnv(kafkaEnv, { KAFKA_BROKERS: brokers(), KAFKA_RESTORE_READER: 'kafkajs' }), 'it-wire', createLogger('it-wire', 'error'));
    const client = await readPartitionsToEnd(byClient, topic, [0, 1, 2], 'it-wire');
    for (const [partition, entries] of client) expect(entries.map((e) => `${e.key}=${e.value?.toString() ?? 'null'}`)).toEqual(seen.get(partition));
  });

  it('restores a changelog (readPartitionsToEnd) as the Kafka client does', async () => {
    // testKafka's client restores with the lean reader (KAFKA_RESTORE_READER's default).
    const lean = await readPartitionsToEnd(kafka, topic, [0, 1, 2], 'it-wire');
    expect(new Map([...lean].map(([p, entries]) => [p, entries.map((e) => `${e.key}=${e.value?.toString() ?? 'null'}`)]))).toEqual(expected);
  });

  it('reads a range in the middle: from its first offset to the one before its end', async () => {
    // Offsets of partition 1: round 0 holds a-1 (0), b (1, aborted), plain (2), a-2 (3), its two markers (4, 5).
    const seen = await readAll([{ partition: 1, start: 2, end: 8 }]);
    // offsets 2..7: plain0 (2), a0-2 (3), markers (4, 5), a1-1 (6), b1 (7)
    expect(seen.get(1)).toEqual(['plain0p1=0', 'a0p1-2=0', `a1p1-1=${'x'.repeat(150)}`, `b1p1=${'x'.repeat(150)}`]);
  });

  it('waits for a transaction open at its start and reads it once committed', async () => {
    const producer = await transactional();
    const before = await ends();
    const open = await producer.transaction();
    await open.send({ topic, messages: [message(0, 'late', 'committed later')] });
    // Its record is the next offset (the admin's end offsets are read_committed: they stop before it).
    const end = before.get(0)! + 1;
    expect((await lastStableOffsets()).get(0)).toBe(before.get(0));
    const reading = readAll([{ partition: 0, start: before.get(0)!, end }]);
    await sleep(1_500);
    await open.commit();
    expect((await reading).get(0)).toEqual(['late=committed later']);
  });

  it('names a topic that does not exist once it has waited long enough', async () => {
    await expect(readCommitted({ ...options(), noProgressTimeoutMs: 2_000 }, uniqueName('it_missing'), [{ partition: 0, start: 0, end: 1 }], () => undefined)).rejects.toThrow(
      /gave up after 2000 ms without progress: topic it_missing_\w+ does not exist/,
    );
  });
});
