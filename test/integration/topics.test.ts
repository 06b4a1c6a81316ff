/** scripts/topics.ts, the broker inspection for runs without Kafka UI, on the real broker. */
import { deadLetter, TOPICS, type Kafka } from '@tradeflow/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO, runCommand } from '../../scripts/lib/processes.ts';
import { brokers, resetTopics, testKafka, uniqueName } from './helpers.ts';

let kafka: Kafka;
const group = uniqueName('it-topics');

const topicsCommand = (...args: string[]) => runCommand([process.execPath, `${REPO}/scripts/topics.ts`, ...args], { ...process.env, KAFKA_BROKERS: brokers() });

beforeAll(async () => {
  kafka = testKafka();
  await resetTopics(kafka);
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  // Three orders on partition 1, and a dead letter on partition 2 of orders.dlq.
  await producer.send({
    topic: TOPICS.orders,
    acks: -1,
    messages: [1, 2, 3].map((n) => ({ key: `order-${n}`, value: JSON.stringify({ n, kind: 'order' }), partition: 1, headers: { origin: 'test' } })),
  });
  const letter = deadLetter(
    { topic: TOPICS.orders, partition: 4, offset: '17', key: Buffer.from('bad-order'), value: Buffer.from('{"amount": -1'), headers: {}, timestamp: '1700000000000' },
    TOPICS.ordersDlq,
    'amount: must be greater than 0',
    'order-matcher',
  );
  await producer.send({ topic: TOPICS.ordersDlq, acks: -1, messages: [{ key: letter.key as Buffer, value: letter.value as Buffer, headers: letter.headers, partition: 2 }] });
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  await admin.setOffsets({ groupId: group, topic: TOPICS.orders, partitions: [{ partition: 1, offset: '1' }] });
  await admin.disconnect();
});

describe('node scripts/topics.ts', () => {
  it('lists topics with partitions, offsets and cleanup policy, and groups with their lag', async () => {
    const { code, stdout } = await topicsCommand('list');
    expect(code).toBe(0);
    const line = (start: string) => stdout.split('\n').find((l) => l.startsWith(`${start} `))?.split(/\s{2,}/);
    expect(line(TOPICS.orders)).toEqual([TOPICS.orders, '6', '3', 'delete', '0:0 1:3 2:0 3:0 4:0 5:0']);
    expect(line(TOPICS.positions)).toEqual([TOPICS.positions, '6', '0', 'compact', '0:0 1:0 2:0 3:0 4:0 5:0']);
    expect(line(TOPICS.ordersDlq)?.slice(0, 4)).toEqual([TOPICS.ordersDlq, '6', '1', 'delete']);
    // Committed offset 1 of 3 on partition 1: two behind; the partitions it never committed count whole.
    expect(line(group)).toEqual([group, 'Empty', '0', TOPICS.orders, '2', '1:2']);
  });

  it('tails a topic: partition, offset, key, headers and the value as JSON', async () => {
    const { code, stdout } = await topicsCommand('tail', TOPICS.orders, '--last', '2');
    expect(code).toBe(0);
    const records = stdout.trim().split(/\n(?=─)/);
    expect(records).toHaveLength(2);
    expect(records[0]).toMatch(/^─+ partition 1 {2}offset 1 {2}\S+ {2}key "order-2"\n {2}origin: test\n {2}\{"n":2,"kind":"order"\}$/);
    expect(records[1]).toMatch(/^─+ partition 1 {2}offset 2 {2}\S+ {2}key "order-3"\n {2}origin: test\n {2}\{"n":3,"kind":"order"\}$/);
  });

  it("shows a dead letter's reason first, and a value that is not JSON as it is", async () => {
    const { code, stdout } = await topicsCommand('tail', TOPICS.ordersDlq);
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^─+ partition 2 {2}offset 0 {2}\S+ {2}key "bad-order"$/);
    expect(lines[1]).toBe('  DEAD LETTER from orders: amount: must be greater than 0');
    expect(lines).toContain('  dlq.source.offset: 17');
    expect(lines[lines.length - 1]).toBe('  {"amount": -1   (not JSON)');
  });

  it('refuses an unknown topic, naming the ones there are', async () => {
    const { code, stderr } = await topicsCommand('tail', 'no-such-topic');
    expect(code).toBe(2);
    expect(stderr).toMatch(/no topic no-such-topic; there are: .*orders\.dlq/);
  });
});
