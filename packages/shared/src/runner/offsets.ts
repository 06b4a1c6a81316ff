/** The group's committed offsets, read the way a read_committed consumer must read them (KIP-447). */
import { setTimeout as sleep } from 'node:timers/promises';
import { leanClient, type Kafka } from '../kafka.ts';
import { RetriableError } from '../wire/committed-reader.ts';
import { ConnectionError } from '../wire/connection.ts';
import { fetchGroupOffsets, partitionsOf } from '../wire/group-offsets.ts';
import { COORDINATOR_MOVED, TRY_AGAIN } from '../wire/kafka-errors.ts';
import { tpKey, type TopicPartition } from './records.ts';
import { errorTypes } from './retry.ts';

const isUnstableOffsetCommit = (error: unknown) => errorTypes(error).has('UNSTABLE_OFFSET_COMMIT');
/** A coordinator that moved or is loading, a broken connection: asked again. */
const isPassing = (error: unknown) =>
  error instanceof ConnectionError || error instanceof RetriableError || [...errorTypes(error)].some((type) => COORDINATOR_MOVED.has(type) || TRY_AGAIN.has(type));

/**
 * The group's committed offsets of the partitions `owns` picks, as the group coordinator has them
 * now: OffsetFetch with require_stable (v7, KIP-447; wire/group-offsets.ts), as Kafka's Java
 * consumer asks when it reads committed records. Without it a coordinator may answer from the
 * offsets it had settled a moment before (Kafka 4's coordinator reads at its log's last committed
 * offset), and a partition whose first offsets were just committed reads as never committed: its
 * records would be processed again. A partition with offsets in a transaction still open (an owner
 * under an earlier slot count) is answered UNSTABLE_OFFSET_COMMIT, and is read again until that
 * transaction ends. Only this slot's partitions are asked for: the other slots' transactions are
 * open most of the time.
 */
export async function readStableOffsets(kafka: Kafka, groupId: string, topics: readonly string[], owns: (tp: TopicPartition) => boolean): Promise<Map<string, bigint>> {
  const all = await partitionsOf(leanClient(kafka), topics);
  return readStableOffsetsOf(
    kafka,
    groupId,
    all.flatMap(({ topic, partitions }) => partitions.map((partition) => ({ topic, partition })).filter(owns)),
  );
}

/**
 * readStableOffsets of exactly these partitions: each is in the answer (0 when the group never
 * committed one), or this throws. A partition left out would read as "nothing committed".
 */
export async function readStableOffsetsOf(kafka: Kafka, groupId: string, wanted: readonly TopicPartition[]): Promise<Map<string, bigint>> {
  const byTopic = new Map<string, number[]>();
  for (const { topic, partition } of wanted) {
    let partitions = byTopic.get(topic);
    if (partitions === undefined) byTopic.set(topic, (partitions = []));
    partitions.push(partition);
  }
  const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }));
  if (topics.length === 0) return new Map();
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const committed = new Map<string, bigint>();
      for (const [key, offset] of await fetchGroupOffsets(leanClient(kafka), groupId, topics, true)) committed.set(key, offset < 0n ? 0n : offset);
      const missing = wanted.filter((tp) => !committed.has(tpKey(tp)));
      if (missing.length > 0) throw new Error(`the group coordinator left out the committed offsets of ${missing.map(tpKey).join(', ')}`);
      return committed;
    } catch (error) {
      // A transaction times out after 60 s at most (transactionalProducer) and is aborted then,
      // which ends UNSTABLE_OFFSET_COMMIT; a moved coordinator is looked up again; anything else is
      // for the caller to retry.
      if (!(isUnstableOffsetCommit(error) || isPassing(error)) || Date.now() - started > 90_000) throw error;
      await sleep(Math.min(200, 10 * attempt));
    }
  }
}
