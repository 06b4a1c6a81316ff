/** What the runners consume and produce, and how outputs are cut into produce requests and partitioned. */
import { keyPartition } from '../wire/produce.ts';

/** A record's headers as the client gives them (a value is bytes, or text when produced as text). */
export type RecordHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined>;

export interface ConsumedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: RecordHeaders;
  /** Broker or producer timestamp, epoch milliseconds as a string. */
  readonly timestamp: string;
  /**
   * An own output a stateful stage applies where it produced it (applyOwnOutputs): the value as
   * the handler that produced it had it (ProducedRecord.parsed), so it need not be decoded again.
   */
  readonly parsed?: unknown;
}

export interface ProducedRecord {
  readonly topic: string;
  readonly key: string | Buffer | null;
  /** null is a tombstone (deletes the key from a compacted topic). */
  readonly value: string | Buffer | null;
  readonly headers?: Record<string, string | Buffer>;
  /** An explicit partition; by default the key decides. */
  readonly partition?: number;
  /** The value before it was encoded, for a stage that applies its own outputs (ConsumedRecord.parsed); not sent. */
  readonly parsed?: unknown;
}

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

export const tpKey = (tp: TopicPartition) => `${tp.topic}-${tp.partition}`;

/**
 * A produce request carries one record batch per partition, and the broker refuses batches above
 * message.max.bytes (1 MiB by default). Input batches can be larger than that (a backlog fetched
 * at maxBytesPerPartition), so outputs are sent in chunks well below it.
 */
const MAX_PRODUCE_CHUNK_BYTES = 512 * 1024;

type OutgoingMessage = { key: string | Buffer | null; value: string | Buffer | null; headers?: Record<string, string | Buffer>; partition?: number };
type TopicMessages = { topic: string; messages: OutgoingMessage[] };

function recordSize(record: ProducedRecord): number {
  let size = 64 + (record.key?.length ?? 0) + (record.value?.length ?? 0);
  if (record.headers !== undefined) for (const [name, value] of Object.entries(record.headers)) size += name.length + value.length + 8;
  return size;
}

/** Groups outputs by topic, cut into chunks of at most MAX_PRODUCE_CHUNK_BYTES, in order. */
export function produceChunks(outputs: readonly ProducedRecord[], maxBytes = MAX_PRODUCE_CHUNK_BYTES): TopicMessages[][] {
  const chunks: TopicMessages[][] = [];
  let byTopic = new Map<string, TopicMessages>();
  let bytes = 0;
  for (const out of outputs) {
    const size = recordSize(out);
    if (bytes > 0 && bytes + size > maxBytes) {
      chunks.push([...byTopic.values()]);
      byTopic = new Map();
      bytes = 0;
    }
    let entry = byTopic.get(out.topic);
    if (entry === undefined) byTopic.set(out.topic, (entry = { topic: out.topic, messages: [] }));
    const message: OutgoingMessage = { key: out.key, value: out.value };
    if (out.headers !== undefined) message.headers = out.headers;
    if (out.partition !== undefined) message.partition = out.partition;
    entry.messages.push(message);
    bytes += size;
  }
  if (bytes > 0) chunks.push([...byTopic.values()]);
  return chunks;
}

let nullKeyTurn = 0;

/**
 * Which partition of a topic with `count` partitions a record goes to: its own, else its key's
 * under Kafka's default partitioner (murmur2, as the Java client computes it), else round robin.
 */
export function partitionFor(record: ProducedRecord, count: number): number {
  if (record.partition !== undefined) return record.partition;
  if (record.key !== null) return keyPartition(record.key, count);
  return (nullKeyTurn = (nullKeyTurn + 1) % count);
}
