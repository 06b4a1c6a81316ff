/**
 * A lean reader of committed records over offset ranges, for reading a whole history fast
 * (reconciliation): Kafka's Metadata and Fetch requests (read_committed) on connections of its own,
 * one per partition leader, each with its next fetch in flight while the last one is decoded, and
 * the records decoded in place (record-batches.ts): no consumer group, no object per record,
 * offsets as numbers. Plaintext or TLS; a cluster that needs SASL is read with the Kafka client
 * (kafka.ts). A leader that moves or a broker that goes away is looked up again and retried; an
 * error that retrying cannot mend (records deleted under the reader, no such topic) is thrown.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KafkaEnv } from '../config.ts';
import { connectTo, ConnectionError, Reader, Writer, type Connection } from './connection.ts';
import { SaslError, saslOf, type SaslOptions } from './sasl.ts';
import { completeBatches, visitCommittedRecords, type AbortedTransaction } from './record-batches.ts';

export const API_FETCH = 1;
export const API_METADATA = 3;
export const FETCH_VERSION = 11;
export const METADATA_VERSION = 4;

/** Partition errors worth looking the leader up again and retrying (Kafka's retriable codes). */
const RETRIABLE = new Map<number, string>([
  [3, 'UNKNOWN_TOPIC_OR_PARTITION'],
  [5, 'LEADER_NOT_AVAILABLE'],
  [6, 'NOT_LEADER_OR_FOLLOWER'],
  [7, 'REQUEST_TIMED_OUT'],
  [8, 'BROKER_NOT_AVAILABLE'],
  [9, 'REPLICA_NOT_AVAILABLE'],
  [13, 'NETWORK_EXCEPTION'],
  [14, 'COORDINATOR_LOAD_IN_PROGRESS'],
  [19, 'NOT_ENOUGH_REPLICAS'],
  [56, 'KAFKA_STORAGE_ERROR'],
  [74, 'FENCED_LEADER_EPOCH'],
  [75, 'UNKNOWN_LEADER_EPOCH'],
  [78, 'OFFSET_NOT_AVAILABLE'],
]);
const NAMED = new Map<number, string>([
  [1, 'OFFSET_OUT_OF_RANGE (the records were deleted, by retention say, before they were read)'],
  [29, 'TOPIC_AUTHORIZATION_FAILED'],
  [35, 'UNSUPPORTED_VERSION'],
]);

export class ReadError extends Error {
  override readonly name = 'ReadError';
}

/** Retrying may mend it: a connection lost, a leader moved. */
export class RetriableError extends Error {}

export interface OffsetRange {
  readonly partition: number;
  /** The first offset to read, and the one after the last. */
  readonly start: number;
  readonly end: number;
}

export interface CommittedReaderOptions {
  /** host:port of one or more brokers to look the cluster up from. */
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly ssl?: boolean;
  /** SASL authentication of every connection (wire/sasl.ts). */
  readonly sasl?: SaslOptions | undefined;
  /** How much of a partition one fetch brings (at least a whole batch), and of all its leader's. */
  readonly partitionMaxBytes?: number;
  readonly maxBytes?: number;
  readonly maxWaitMs?: number;
  readonly requestTimeoutMs?: number;
  /** How long the reader may go without reading on before it gives up (a topic of millions takes minutes in all). */
  readonly noProgressTimeoutMs?: number;
  /** Told of a retried failure. */
  readonly onRetry?: (reason: string) => void;
  /** Awaited after each fetch's records were visited, before the next fetch is decoded (its reader waits meanwhile). */
  readonly afterFetch?: () => void | Promise<void>;
}

/** Gets each committed record of a partition: its offset, key and value as ranges of `data` (length -1: null). */
export type PartitionRecordVisitor = (partition: number, offset: number, data: Buffer, keyStart: number, keyLength: number, valueStart: number, valueLength: number) => void;

export interface Cluster {
  readonly brokers: Map<number, { host: string; port: number }>;
  /** By topic: each partition's leader. */
  readonly leaders: Map<string, Map<number, number>>;
  /** By topic: how many partitions it has (with a leader or not). */
  readonly partitionCounts: Map<string, number>;
}

export function hostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0) throw new ReadError(`broker address ${address}: expected host:port`);
  return { host, port };
}

export function metadataRequest(topics: readonly string[]): Buffer {
  return new Writer().array(topics, (w, t) => w.string(t)).int8(0).bytes();
}

/** The brokers, and the leader of each partition of `topics` (by topic) that has one. */
export function parseMetadata(body: Buffer, topics: readonly string[]): Cluster {
  const r = new Reader(body);
  r.int32(); // throttle time
  const brokers = new Map<number, { host: string; port: number }>();
  r.array((r) => {
    const id = r.int32();
    const host = r.string() ?? '';
    const port = r.int32();
    r.string(); // rack
    brokers.set(id, { host, port });
  });
  r.string(); // cluster id
  r.int32(); // controller
  const leaders = new Map<string, Map<number, number>>();
  const partitionCounts = new Map<string, number>();
  r.array((r) => {
    const error = r.int16();
    const name = r.string();
    r.int8(); // internal
    const partitions = r.array((r) => {
      const partitionError = r.int16();
      const partition = r.int32();
      const leader = r.int32();
      r.array((r) => r.int32());
      r.array((r) => r.int32());
      return { partitionError, partition, leader };
    });
    if (name === null || !topics.includes(name)) return;
    if (error === 3) throw new RetriableError(`topic ${name} does not exist (UNKNOWN_TOPIC_OR_PARTITION)`);
    if (error !== 0) throw (RETRIABLE.has(error) ? new RetriableError(`metadata of ${name}: ${RETRIABLE.get(error)}`) : new ReadError(`metadata of ${name}: error ${NAMED.get(error) ?? error}`));
    const byPartition = new Map<number, number>();
    for (const p of partitions) if (p.leader >= 0) byPartition.set(p.partition, p.leader);
    leaders.set(name, byPartition);
    partitionCounts.set(name, partitions.length);
  });
  for (const topic of topics) if (!leaders.has(topic)) throw new RetriableError(`topic ${topic} is not in the metadata`);
  return { brokers, leaders, partitionCounts };
}

export interface FetchedPartition {
  readonly topic: string;
  readonly partition: number;
  readonly error: number;
  readonly highWatermark: number;
  readonly logStartOffset: number;
  readonly aborted: AbortedTransaction[];
  readonly records: Buffer | null;
}

export type FetchSettings = Required<Pick<CommittedReaderOptions, 'maxWaitMs' | 'maxBytes' | 'partitionMaxBytes'>>;

/** A read_committed Fetch (no fetch session) of each topic's partitions from their offsets. */
export function fetchRequest(offsets: ReadonlyMap<string, ReadonlyMap<number, number>>, settings: FetchSettings): Buffer {
  let count = 0;
  for (const partitions of offsets.values()) count += partitions.size;
  return new Writer(128 + 28 * count)
    .int32(-1) // replica id: a consumer
    .int32(settings.maxWaitMs)
    .int32(1) // min bytes
    .int32(settings.maxBytes)
    .int8(1) // read_committed
    .int32(0) // no fetch session
    .int32(-1)
    .array([...offsets], (w, [topic, partitions]) =>
      w.string(topic).array([...partitions], (w, [partition, offset]) => w.int32(partition).int32(-1).int64(offset).int64(-1).int32(settings.partitionMaxBytes)),
    )
    .array([], () => undefined) // forgotten topics
    .string('') // rack
    .bytes();
}

export function parseFetch(body: Buffer): FetchedPartition[] {
  const r = new Reader(body);
  r.int32(); // throttle time
  const error = r.int16();
  if (error !== 0) throw RETRIABLE.has(error) ? new RetriableError(`fetch: ${RETRIABLE.get(error)}`) : new ReadError(`fetch: error ${NAMED.get(error) ?? error}`);
  r.int32(); // session
  const fetched: FetchedPartition[] = [];
  r.array((r) => {
    const topic = r.string() ?? '';
    r.array((r) => {
      const partition = r.int32();
      const error = r.int16();
      const highWatermark = Number(r.int64());
      r.int64(); // last stable offset
      const logStartOffset = Number(r.int64());
      const aborted = r.array((r) => ({ producerId: r.int64(), firstOffset: Number(r.int64()) }));
      r.int32(); // preferred read replica
      const records = r.bytes();
      fetched.push({ topic, partition, error, highWatermark, logStartOffset, aborted, records });
    });
  });
  return fetched;
}

/** A partition error of a fetch as an error to throw: retriable (look the leader up again) or not. */
export function partitionError(f: FetchedPartition, offset: number | undefined): Error {
  const retriable = RETRIABLE.get(f.error);
  if (retriable !== undefined) return new RetriableError(`${f.topic} partition ${f.partition}: ${retriable}`);
  return new ReadError(`${f.topic} partition ${f.partition} at offset ${offset}: error ${NAMED.get(f.error) ?? f.error}`);
}

/**
 * The cluster as the first bootstrap broker that answers sees it (its brokers and the leaders of
 * `topics`); an error that retrying cannot mend is thrown as it is, the rest as a RetriableError.
 */
export async function lookUpCluster(bootstrap: readonly { host: string; port: number }[], topics: readonly string[], connect: (host: string, port: number) => Connection): Promise<Cluster> {
  let last: unknown;
  for (const { host, port } of bootstrap) {
    const connection = connect(host, port);
    try {
      return parseMetadata(await connection.request(API_METADATA, METADATA_VERSION, metadataRequest(topics)), topics);
    } catch (error) {
      last = error;
      // A refused login is not mended by asking another broker or asking again.
      if (error instanceof ReadError || error instanceof SaslError) throw error;
    } finally {
      connection.close();
    }
  }
  throw last instanceof RetriableError ? last : new RetriableError(String((last as Error)?.message ?? last));
}

/**
 * Reads every committed record of `topic` in the given offset ranges, each partition's in order,
 * to `visit`. Resolves when every range is read to its end.
 */
export async function readCommitted(options: CommittedReaderOptions, topic: string, ranges: readonly OffsetRange[], visit: PartitionRecordVisitor): Promise<void> {
  const settings = {
    maxWaitMs: options.maxWaitMs ?? 100,
    partitionMaxBytes: options.partitionMaxBytes ?? 8 * 1024 * 1024,
    maxBytes: options.maxBytes ?? 32 * 1024 * 1024,
  };
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const noProgressTimeoutMs = options.noProgressTimeoutMs ?? 120_000;
  const connect = (host: string, port: number) => connectTo(options, host, port, requestTimeoutMs + settings.maxWaitMs);
  const ends = new Map(ranges.filter((r) => r.end > r.start).map((r) => [r.partition, r.end]));
  const next = new Map(ranges.filter((r) => r.end > r.start).map((r) => [r.partition, r.start]));
  const bootstrap = options.brokers.map(hostPort);
  let progressAt = Date.now();
  let backoffMs = 100;

  const lookUp = () => lookUpCluster(bootstrap, [topic], connect);

  /** Reads the partitions one leader leads until they are done. */
  async function fromLeader(connection: Connection, partitions: readonly number[]): Promise<void> {
    const mine = new Set(partitions.filter((p) => next.has(p)));
    const request = () => {
      const offsets = new Map([...mine].map((p) => [p, next.get(p)!]));
      const sent = connection.request(API_FETCH, FETCH_VERSION, fetchRequest(new Map([[topic, offsets]]), settings));
      sent.catch(() => undefined);
      return { sent, offsets };
    };
    let inFlight = request();
    while (mine.size > 0) {
      const { sent, offsets } = inFlight;
      const fetched = parseFetch(await sent).filter((f) => f.topic === topic);
      for (const f of fetched) if (f.error !== 0) throw partitionError(f, offsets.get(f.partition));
      // Where the next fetch starts is in the batch headers: it goes out before these records are decoded.
      for (const f of fetched) {
        if (f.records === null || !mine.has(f.partition)) continue;
        const { nextOffset } = completeBatches(f.records);
        if (nextOffset === undefined || nextOffset <= next.get(f.partition)!) continue;
        next.set(f.partition, nextOffset);
        progressAt = Date.now();
        if (nextOffset >= ends.get(f.partition)!) mine.delete(f.partition);
      }
      if (mine.size > 0) inFlight = request();
      for (const f of fetched) {
        if (f.records === null || f.records.length === 0) continue;
        const end = ends.get(f.partition)!;
        const from = offsets.get(f.partition)!;
        const partition = f.partition;
        visitCommittedRecords(f.records, f.aborted, from, (offset, data, ks, kl, vs, vl) => {
          if (offset < end) visit(partition, offset, data, ks, kl, vs, vl);
        });
      }
      if (options.afterFetch !== undefined) await options.afterFetch();
      if (Date.now() - progressAt > noProgressTimeoutMs) {
        throw new ReadError(`${topic}: no record read for ${noProgressTimeoutMs} ms at ${[...mine].map((p) => `partition ${p} offset ${next.get(p)}`).join(', ')} (a transaction left open?)`);
      }
    }
  }

  while ([...next].some(([p, offset]) => offset < ends.get(p)!)) {
    let connections = new Map<number, Connection>();
    try {
      const cluster = await lookUp();
      const byLeader = new Map<number, number[]>();
      for (const [p, offset] of next) {
        if (offset >= ends.get(p)!) continue;
        const leader = cluster.leaders.get(topic)?.get(p);
        if (leader === undefined) throw new RetriableError(`${topic} partition ${p}: no leader`);
        byLeader.set(leader, [...(byLeader.get(leader) ?? []), p]);
      }
      connections = new Map(
        [...byLeader.keys()].map((id) => {
          const broker = cluster.brokers.get(id);
          if (broker === undefined) throw new RetriableError(`broker ${id} leads partitions but is not in the metadata`);
          return [id, connect(broker.host, broker.port)];
        }),
      );
      // One leader's failure ends the others' reads too: all look the leaders up again.
      await Promise.all([...byLeader].map(([id, partitions]) => fromLeader(connections.get(id)!, partitions).catch((error: unknown) => {
        for (const c of connections.values()) c.close();
        throw error;
      })));
      backoffMs = 100;
    } catch (error) {
      if (!(error instanceof RetriableError || error instanceof ConnectionError)) throw error;
      if (Date.now() - progressAt > noProgressTimeoutMs) throw new ReadError(`${topic}: gave up after ${noProgressTimeoutMs} ms without progress: ${error.message}`);
      options.onRetry?.(error.message);
      await sleep(backoffMs);
      backoffMs = Math.min(5_000, backoffMs * 2);
    } finally {
      for (const c of connections.values()) c.close();
    }
  }
}

/** The reader's options from the Kafka settings (TLS and SASL as the Kafka client's). */
export function committedReaderOptions(env: KafkaEnv, clientId: string, fetchBytes?: number): CommittedReaderOptions {
  return {
    brokers: env.KAFKA_BROKERS,
    clientId: env.KAFKA_CLIENT_ID ?? clientId,
    ssl: env.KAFKA_SSL,
    sasl: saslOf(env),
    ...(fetchBytes === undefined ? {} : { partitionMaxBytes: fetchBytes, maxBytes: Math.max(fetchBytes, Math.min(4 * fetchBytes, 64 * 1024 * 1024)) }),
  };
}
