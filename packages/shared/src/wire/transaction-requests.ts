/**
 * The requests of a transactional producer other than Produce (produce.ts), encoded and decoded:
 * FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit (v3, with
 * the group member and generation of KIP-447) and EndTxn, at the versions the Kafka client the
 * project started with sent (all served by Kafka 2.x to 4.x). Pure.
 */
import { Reader, Writer } from './connection.ts';

export const API_FIND_COORDINATOR = 10;
export const API_INIT_PRODUCER_ID = 22;
export const API_ADD_PARTITIONS_TO_TXN = 24;
export const API_ADD_OFFSETS_TO_TXN = 25;
export const API_END_TXN = 26;
export const API_TXN_OFFSET_COMMIT = 28;

export const FIND_COORDINATOR_VERSION = 2;
export const INIT_PRODUCER_ID_VERSION = 1;
export const ADD_PARTITIONS_TO_TXN_VERSION = 1;
export const ADD_OFFSETS_TO_TXN_VERSION = 1;
export const END_TXN_VERSION = 1;
/** Flexible (KIP-482): its header and body carry tagged fields. */
export const TXN_OFFSET_COMMIT_VERSION = 3;

export const COORDINATOR_GROUP = 0;
export const COORDINATOR_TRANSACTION = 1;

/** The producer's id and epoch, as InitProducerId gave them. */
export interface ProducerIdentity {
  readonly transactionalId: string;
  readonly producerId: bigint;
  readonly producerEpoch: number;
}

export function findCoordinatorRequest(key: string, keyType: number): Buffer {
  return new Writer(64).string(key).int8(keyType).bytes();
}

export function parseFindCoordinator(body: Buffer): { error: number; message: string | null; nodeId: number; host: string; port: number } {
  const r = new Reader(body);
  r.int32(); // throttle time
  const error = r.int16();
  const message = r.string();
  const nodeId = r.int32();
  const host = r.string() ?? '';
  const port = r.int32();
  return { error, message, nodeId, host, port };
}

export function initProducerIdRequest(transactionalId: string, transactionTimeoutMs: number): Buffer {
  return new Writer(64).string(transactionalId).int32(transactionTimeoutMs).bytes();
}

export function parseInitProducerId(body: Buffer): { error: number; producerId: bigint; producerEpoch: number } {
  const r = new Reader(body);
  r.int32(); // throttle time
  const error = r.int16();
  return { error, producerId: r.int64(), producerEpoch: r.int16() };
}

const identity = (w: Writer, p: ProducerIdentity) => w.string(p.transactionalId).int64(p.producerId).int16(p.producerEpoch);

export function addPartitionsToTxnRequest(p: ProducerIdentity, partitions: ReadonlyMap<string, readonly number[]>): Buffer {
  return identity(new Writer(128), p)
    .array([...partitions], (w, [topic, numbers]) => w.string(topic).array(numbers, (w, n) => w.int32(n)))
    .bytes();
}

/** Each partition's error code (0: added). */
export function parseAddPartitionsToTxn(body: Buffer): { topic: string; partition: number; error: number }[] {
  const r = new Reader(body);
  r.int32(); // throttle time
  const out: { topic: string; partition: number; error: number }[] = [];
  r.array((r) => {
    const topic = r.string() ?? '';
    r.array((r) => out.push({ topic, partition: r.int32(), error: r.int16() }));
  });
  return out;
}

export function addOffsetsToTxnRequest(p: ProducerIdentity, groupId: string): Buffer {
  return identity(new Writer(128), p).string(groupId).bytes();
}

export function endTxnRequest(p: ProducerIdentity, commit: boolean): Buffer {
  return identity(new Writer(64), p).int8(commit ? 1 : 0).bytes();
}

/** The error code of a response that has only a throttle time and one (AddOffsetsToTxn, EndTxn). */
export function parseErrorCode(body: Buffer): number {
  const r = new Reader(body);
  r.int32(); // throttle time
  return r.int16();
}

/** The offsets a transaction commits for a group: the next offset to read per topic-partition. */
export interface GroupOffsets {
  readonly groupId: string;
  /** The member and generation they were committed in (KIP-447); without them the coordinator checks neither. */
  readonly member?: { readonly generationId: number; readonly memberId: string } | undefined;
  readonly topics: readonly { readonly topic: string; readonly partitions: readonly { readonly partition: number; readonly offset: string | bigint }[] }[];
}

export function txnOffsetCommitRequest(p: ProducerIdentity, offsets: GroupOffsets): Buffer {
  return new Writer(256)
    .compactString(p.transactionalId)
    .compactString(offsets.groupId)
    .int64(p.producerId)
    .int16(p.producerEpoch)
    .int32(offsets.member?.generationId ?? -1)
    .compactString(offsets.member?.memberId ?? '')
    .compactString(null) // group instance id
    .compactArray(offsets.topics, (w, t) =>
      w
        .compactString(t.topic)
        .compactArray(t.partitions, (w, p) => w.int32(p.partition).int64(BigInt(p.offset)).int32(-1).compactString(null).noTags())
        .noTags(),
    )
    .noTags()
    .bytes();
}

/** Each partition's error code (0: committed in the transaction). */
export function parseTxnOffsetCommit(body: Buffer): { topic: string; partition: number; error: number }[] {
  const r = new Reader(body);
  r.int32(); // throttle time
  const out: { topic: string; partition: number; error: number }[] = [];
  r.compactArray((r) => {
    const topic = r.compactString() ?? '';
    r.compactArray((r) => {
      out.push({ topic, partition: r.int32(), error: r.int16() });
      r.skipTags();
    });
    r.skipTags();
  });
  r.skipTags();
  return out;
}
