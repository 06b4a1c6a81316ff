/**
 * A consumer group's committed offsets, read from its coordinator with OffsetFetch v7, which can
 * ask for them "stable" (require_stable, KIP-447): a partition whose offsets an open transaction
 * holds is answered UNSTABLE_OFFSET_COMMIT instead of with the offsets settled before it. On its
 * own short-lived connections (FindCoordinator, then OffsetFetch); TLS and SASL as configured.
 */
import { lookUpCluster, hostPort, type CommittedReaderOptions } from './committed-reader.ts';
import { connectTo, Reader, Writer, type Connection } from './connection.ts';
import { KafkaProtocolError } from './kafka-errors.ts';
import { API_FIND_COORDINATOR, COORDINATOR_GROUP, FIND_COORDINATOR_VERSION, findCoordinatorRequest, parseFindCoordinator } from './transaction-requests.ts';

export const API_OFFSET_FETCH = 9;
/** The first version with require_stable; flexible (KIP-482). Served by Kafka 2.5 on. */
export const OFFSET_FETCH_VERSION = 7;

export interface TopicPartitions {
  readonly topic: string;
  readonly partitions: readonly number[];
}

export function offsetFetchRequest(groupId: string, topics: readonly TopicPartitions[], requireStable: boolean): Buffer {
  return new Writer(128)
    .compactString(groupId)
    .compactArray(topics, (w, t) => w.compactString(t.topic).compactArray(t.partitions, (w, p) => w.int32(p)).noTags())
    .int8(requireStable ? 1 : 0)
    .noTags()
    .bytes();
}

export interface FetchedOffset {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to read; -1: the group never committed one. */
  readonly offset: bigint;
  readonly error: number;
}

/** Each partition's committed offset and error code, and the response's own error code. */
export function parseOffsetFetch(body: Buffer): { error: number; partitions: FetchedOffset[] } {
  const r = new Reader(body);
  r.int32(); // throttle time
  const partitions: FetchedOffset[] = [];
  r.compactArray((r) => {
    const topic = r.compactString() ?? '';
    r.compactArray((r) => {
      const partition = r.int32();
      const offset = r.int64();
      r.int32(); // committed leader epoch
      r.compactString(); // metadata
      partitions.push({ topic, partition, offset, error: r.int16() });
      r.skipTags();
    });
    r.skipTags();
  });
  const error = r.int16();
  r.skipTags();
  return { error, partitions };
}

const connect = (options: CommittedReaderOptions, host: string, port: number) => connectTo(options, host, port, options.requestTimeoutMs ?? 30_000);

/**
 * The group's committed offsets of these partitions, keyed `topic-partition` (-1: none committed).
 * Throws a KafkaProtocolError for the first error the coordinator answered (UNSTABLE_OFFSET_COMMIT
 * for a partition an open transaction holds offsets of, NOT_COORDINATOR after a move, …): what to
 * retry is the caller's to say.
 */
export async function fetchGroupOffsets(options: CommittedReaderOptions, groupId: string, topics: readonly TopicPartitions[], requireStable: boolean): Promise<Map<string, bigint>> {
  const bootstrap = hostPort(options.brokers[Math.floor(Math.random() * options.brokers.length)]!);
  const first = connect(options, bootstrap.host, bootstrap.port);
  let coordinator: Connection | undefined;
  try {
    const found = parseFindCoordinator(await first.request(API_FIND_COORDINATOR, FIND_COORDINATOR_VERSION, findCoordinatorRequest(groupId, COORDINATOR_GROUP)));
    if (found.error !== 0) throw new KafkaProtocolError(found.error, `FindCoordinator for group ${groupId}`);
    coordinator = connect(options, found.host, found.port);
    const answer = parseOffsetFetch(await coordinator.request(API_OFFSET_FETCH, OFFSET_FETCH_VERSION, offsetFetchRequest(groupId, topics, requireStable), true));
    if (answer.error !== 0) throw new KafkaProtocolError(answer.error, `OffsetFetch of group ${groupId}`);
    const failed = answer.partitions.find((p) => p.error !== 0);
    if (failed !== undefined) throw new KafkaProtocolError(failed.error, `OffsetFetch of group ${groupId}, ${failed.topic}-${failed.partition}`);
    return new Map(answer.partitions.map((p) => [`${p.topic}-${p.partition}`, p.offset]));
  } finally {
    first.close();
    coordinator?.close();
  }
}

/** Every partition of these topics, as the cluster's metadata has them now. */
export async function partitionsOf(options: CommittedReaderOptions, topics: readonly string[]): Promise<TopicPartitions[]> {
  const cluster = await lookUpCluster(options.brokers.map(hostPort), topics, (host, port) => connect(options, host, port));
  return topics.map((topic) => ({ topic, partitions: Array.from({ length: cluster.partitionCounts.get(topic) ?? 0 }, (_, i) => i) }));
}
