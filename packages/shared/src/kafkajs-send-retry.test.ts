/**
 * patches/kafkajs@2.2.4.patch, src/producer/sendMessages.js: a send whose request to one broker
 * fails is retried for the partitions no broker acknowledged, and only those. Unpatched, the
 * responses were kept per Broker object: a broker that came back as a new object was sent its
 * acknowledged partitions again (with advanced sequence numbers: written twice, also inside a
 * transaction), and a partition whose new leader had acknowledged others was never sent (lost).
 * Both happened on a three-broker cluster with one broker killed (test/integration/cluster.test.ts).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
type Produced = { node: string; partition: number; firstSequence: number; values: string[] };
type SendMessages = (args: {
  logger: unknown;
  cluster: unknown;
  partitioner: (args: { message: { key: string } }) => number;
  eosManager: unknown;
  retrier: <T>(fn: (bail: (e: Error) => void, retryCount: number, retryTime: number) => Promise<T>) => Promise<T>;
}) => (args: { acks: number; timeout: number; topicMessages: { topic: string; messages: { key: string; value: string }[] }[] }) => Promise<{ partition: number }[]>;
const createSendMessages = require('kafkajs/src/producer/sendMessages') as SendMessages;

const parseProduceResponse = (require('kafkajs/src/protocol/requests/produce/v3/response') as { parse: (data: unknown) => Promise<unknown> }).parse;

/**
 * A cluster of scripted brokers: `leaders` says who leads each partition, `fail` which produce
 * calls throw, `refuse` the error code a partition answers a call with (0: written). Responses go
 * through kafkajs's own (patched) produce response parse, as a broker's do.
 */
function scriptedCluster(leaders: Record<number, string>, fail: (node: string, call: number) => boolean, refuse: (partition: number, call: number) => number = () => 0) {
  const produced: Produced[] = [];
  let calls = 0;
  const connectionError = Object.assign(new Error('Connection error: read ECONNRESET'), { name: 'KafkaJSConnectionError' });
  const cluster = {
    targetTopics: new Set<string>(),
    addMultipleTargetTopics: async () => undefined,
    refreshMetadataIfNecessary: async () => undefined,
    refreshMetadata: async () => undefined,
    isConnected: () => true,
    removeBroker: () => undefined,
    findTopicPartitionMetadata: () => Object.keys(leaders).map((p) => ({ partitionId: Number(p), leader: Number(leaders[Number(p)]) })),
    findLeaderForPartitions: (_topic: string, partitions: string[]) => {
      const byLeader: Record<string, number[]> = {};
      for (const p of partitions) (byLeader[leaders[Number(p)]!] ??= []).push(Number(p));
      return byLeader;
    },
    // A new Broker object every time, as after a reconnect.
    findBroker: async ({ nodeId }: { nodeId: string }) => ({
      nodeId: Number(nodeId),
      produce: async ({ topicData }: { topicData: { topic: string; partitions: { partition: number; firstSequence: number; messages: { value: string }[] }[] }[] }) => {
        const call = ++calls;
        if (fail(nodeId, call)) throw connectionError;
        const out = [];
        for (const { partitions } of topicData) {
          for (const p of partitions) {
            const errorCode = refuse(p.partition, call);
            if (errorCode === 0) produced.push({ node: nodeId, partition: p.partition, firstSequence: p.firstSequence, values: p.messages.map((m) => m.value) });
            out.push({ partition: p.partition, errorCode, baseOffset: errorCode === 0 ? '0' : '-1' });
          }
        }
        return parseProduceResponse({ topics: [{ topicName: topicData[0]!.topic, partitions: out }], throttleTime: 0 });
      },
    }),
  };
  const sequences = new Map<number, number>();
  const eosManager = {
    acquireBrokerLock: async () => undefined,
    releaseBrokerLock: async () => undefined,
    isTransactional: () => false,
    getTransactionalId: () => undefined,
    getProducerId: () => 7,
    getProducerEpoch: () => 0,
    getSequence: (_topic: string, partition: number) => sequences.get(partition) ?? 0,
    updateSequence: (_topic: string, partition: number, increment: number) => sequences.set(partition, (sequences.get(partition) ?? 0) + increment),
  };
  // Like kafkajs's retrier: a bailed error ends the send, others are retried (a few times here).
  const retrier = async <T>(fn: (bail: (e: Error) => void, retryCount: number, retryTime: number) => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      let bailed = false;
      try {
        return await fn((e) => {
          bailed = true;
          throw e;
        }, attempt, 0);
      } catch (error) {
        if (bailed || attempt >= 5) throw error;
      }
    }
  };
  const logger = { debug: () => undefined, error: () => undefined, warn: () => undefined, info: () => undefined };
  const send = createSendMessages({ logger, cluster, partitioner: ({ message }) => Number(message.key), eosManager, retrier });
  return { send, produced, leaders, sequences };
}

const messages = [0, 1, 2, 3].map((p) => ({ key: String(p), value: `v${p}` }));

describe('kafkajs sendMessages (patched): a retry sends only what no broker acknowledged', () => {
  it('sends an acknowledged partition once, though its broker is a new object on the retry', async () => {
    // Node 1 leads 0 and 2, node 2 leads 1 and 3; node 2's first request fails.
    let failedOnce = false;
    const { send, produced } = scriptedCluster({ 0: '1', 1: '2', 2: '1', 3: '2' }, (node) => {
      if (node !== '2' || failedOnce) return false;
      failedOnce = true;
      return true;
    });
    const responses = await send({ acks: -1, timeout: 30_000, topicMessages: [{ topic: 't', messages }] });
    expect(produced.map((p) => `${p.partition}@${p.node}`).sort()).toEqual(['0@1', '1@2', '2@1', '3@2']);
    expect(responses.map((r) => r.partition).sort()).toEqual([0, 1, 2, 3]);
    // The partitions sent again start where the failed request did: the same sequence numbers.
    expect(produced.filter((p) => p.partition === 1).map((p) => p.firstSequence)).toEqual([0]);
  });

  it('sends an unacknowledged partition to its new leader, though that broker acknowledged others', async () => {
    let call = 0;
    const script = scriptedCluster({ 0: '1', 1: '2', 2: '1', 3: '2' }, (node) => {
      call++;
      if (node !== '2') return false;
      // Node 2 dies: its partitions move to node 1, which acknowledged 0 and 2 already.
      script.leaders[1] = '1';
      script.leaders[3] = '1';
      return true;
    });
    await script.send({ acks: -1, timeout: 30_000, topicMessages: [{ topic: 't', messages }] });
    expect(script.produced.map((p) => `${p.partition}@${p.node}`).sort()).toEqual(['0@1', '1@1', '2@1', '3@1']);
    expect(script.produced.map((p) => p.values).flat().sort()).toEqual(['v0', 'v1', 'v2', 'v3']);
    expect(call).toBe(3);
  });

  it('keeps the partitions a failed request wrote: a retry sends only the refused one', async () => {
    // One broker leads all four; partition 2 answers the first call NOT_LEADER_FOR_PARTITION (retriable).
    const { send, produced, sequences } = scriptedCluster({ 0: '1', 1: '1', 2: '1', 3: '1' }, () => false, (partition, call) => (partition === 2 && call === 1 ? 6 : 0));
    await send({ acks: -1, timeout: 30_000, topicMessages: [{ topic: 't', messages }] });
    // Each partition written once: unpatched, 0, 1 and 3 went again (the broker dropped them as duplicates only while the producer id held).
    expect(produced.map((p) => p.partition).sort()).toEqual([0, 1, 2, 3]);
    expect(produced.filter((p) => p.partition === 2).map((p) => p.firstSequence)).toEqual([0]);
    expect([...sequences].sort(([a], [b]) => a - b)).toEqual([[0, 1], [1, 1], [2, 1], [3, 1]]);
  });

  it('a send refused for good by one partition names the partitions it wrote all the same', async () => {
    // Partition 3 answers OUT_OF_ORDER_SEQUENCE_NUMBER (not retriable), the others are written.
    const { send, produced, sequences } = scriptedCluster({ 0: '1', 1: '2', 2: '1', 3: '2' }, () => false, (partition) => (partition === 3 ? 45 : 0));
    const error = (await send({ acks: -1, timeout: 30_000, topicMessages: [{ topic: 't', messages }] }).catch((e: unknown) => e)) as Error & { type?: string; acknowledgedPartitions?: { topic: string; partition: number }[] };
    expect(error.type).toBe('OUT_OF_ORDER_SEQUENCE_NUMBER');
    expect(error.acknowledgedPartitions?.map((p) => `${p.topic}-${p.partition}`).sort()).toEqual(['t-0', 't-1', 't-2']);
    expect(produced.map((p) => p.partition).sort()).toEqual([0, 1, 2]);
    // The refused partition's sequence is rolled back, the written ones' stay advanced.
    expect(sequences.get(3)).toBe(0);
    expect([0, 1, 2].map((p) => sequences.get(p))).toEqual([1, 1, 1]);
  });
});
