/**
 * The Kafka client as the services use it, on the real broker: what each transaction costs in
 * requests. kafkajs 2.2.4 looked up the transaction coordinator before AddPartitionsToTxn,
 * AddOffsetsToTxn and EndTxn and the group coordinator before TxnOffsetCommit, so every
 * transaction paid four extra FindCoordinator round trips; patches/kafkajs@2.2.4.patch keeps the
 * coordinators until a request to them fails.
 */
import { randomUUID } from 'node:crypto';
import { TOPICS, type Kafka } from '@tradeflow/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readTopic, resetTopics, testKafka } from './helpers.ts';

let kafka: Kafka;

beforeEach(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('transactional producer', () => {
  it('looks each coordinator up once, not before every request of every transaction', async () => {
    const producer = kafka.producer({ transactionalId: `it-${randomUUID()}`, idempotent: true, maxInFlightRequests: 1 });
    cleanups.push(() => producer.disconnect());
    const requests = new Map<string, number>();
    producer.on(producer.events.REQUEST, ({ payload }) => requests.set(payload.apiName, (requests.get(payload.apiName) ?? 0) + 1));
    await producer.connect();

    const TRANSACTIONS = 20;
    for (let i = 0; i < TRANSACTIONS; i++) {
      const transaction = await producer.transaction();
      await transaction.send({ topic: TOPICS.prices, messages: [{ key: 'IVE', value: `v${i}` }] });
      await transaction.sendOffsets({ consumerGroupId: 'it-client', topics: [{ topic: TOPICS.ticks, partitions: [{ partition: 0, offset: String(i + 1) }] }] });
      await transaction.commit();
    }

    // One lookup of the transaction coordinator (InitProducerId) and one of the group's.
    expect(requests.get('GroupCoordinator') ?? 0).toBe(2);
    // AddPartitionsToTxn right after a commit may be answered CONCURRENT_TRANSACTIONS and retried.
    expect(requests.get('AddPartitionsToTxn')).toBeGreaterThanOrEqual(TRANSACTIONS);
    expect(requests.get('AddOffsetsToTxn')).toBe(TRANSACTIONS);
    expect(requests.get('TxnOffsetCommit')).toBe(TRANSACTIONS);
    expect(requests.get('EndTxn')).toBe(TRANSACTIONS);
    const committed = await readTopic(kafka, TOPICS.prices, TRANSACTIONS);
    expect(committed.map((r) => r.value?.toString()).sort()).toEqual(Array.from({ length: TRANSACTIONS }, (_, i) => `v${i}`).sort());
  });
});
