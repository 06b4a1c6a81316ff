/** The options every runner takes, and what a started runner gives back. */
import type { Kafka } from '../kafka.ts';
import type { Logger } from '../logger.ts';
import type { ServiceMetrics } from '../metrics.ts';
import type { ConsumedRecord, ProducedRecord, TopicPartition } from './records.ts';

export interface RunnerOptions {
  readonly kafka: Kafka;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  readonly groupId: string;
  readonly topics: readonly string[];
  /** Upper bound of the backoff between retries. */
  readonly retryMaxMs?: number;
  /** Max bytes one fetch request returns, all partitions together (16 MiB by default). */
  readonly maxBytes?: number;
  /** Max bytes fetched per partition and request; bounds the size of one batch. */
  readonly maxBytesPerPartition?: number;
  readonly partitionsConsumedConcurrently?: number;
  /** A fetch returns once this many bytes are there or fetchMaxWaitMs passed (batching vs latency). */
  readonly fetchMinBytes?: number;
  readonly fetchMaxWaitMs?: number;
  /**
   * Exactly-once runners: partition p of every input topic belongs to slot p mod slots; a slot is
   * assigned whole to one member and committed by one transactional producer. Fewer slots mean
   * fewer, larger transactions (and fewer producers holding back each output partition's last
   * stable offset); more slots let more members share the work. Every member of a group must use
   * the same number.
   */
  readonly slots?: number;
  /**
   * Exactly-once runners: `slot` (the default) gives each slot its own transactional producer, named
   * after the slot; `instance` gives each instance one, named after the process, and `slots` is not
   * used: the group deals partition p of every input to its members round robin, and offset commits
   * carry the member's group generation, so that a member that lost partitions cannot commit for
   * them (KIP-447). Every member of a group must use the same.
   */
  readonly producerPer?: 'slot' | 'instance';
  /**
   * The least time between the starts of a lane's transactions (or sink writes): work arriving
   * sooner waits and joins the next one; a lane idle for longer starts at once. 0 (the default
   * here; the services take COMMIT_INTERVAL_MS, 20 ms) starts one as soon as the last one ends.
   */
  readonly commitIntervalMs?: number;
  /**
   * The most input records a lane's transaction (or sink write) takes of what is queued (a batch
   * is split at the limit); unlimited by default here (the services take TRANSACTION_MAX_RECORDS).
   */
  readonly maxRecordsPerTransaction?: number;
  /**
   * Exactly-once runners: 0 (the default here; the services take TRANSACTION_STREAM_MS, 200) has a
   * transaction take what its lane has queued when it starts, all of it held in memory until the
   * commit. Above 0, a transaction takes the lane's batches a piece at a time
   * (maxRecordsPerTransaction records each, else whole batches of up to STREAM_PIECE_RECORDS together), processing and sending each
   * piece while the next is fetched, for up to this many milliseconds or until the lane has nothing
   * queued, and then commits: memory holds about one piece, transactions stay large. A transaction
   * that fails after its first piece is not retried in place: what it took is fetched again.
   */
  readonly transactionStreamMs?: number;
  /** Called when the consumer stopped for good on an error; by default the process exits 1. */
  readonly onFatal?: (error: Error) => void;
}

export interface TransformOptions extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Pure with respect to Kafka: returns the records to produce for these input records. */
  readonly handle: (records: readonly ConsumedRecord[], source: TopicPartition) => readonly ProducedRecord[] | Promise<readonly ProducedRecord[]>;
}

export interface SinkOptions extends RunnerOptions {
  /**
   * Must be idempotent: a batch is written again after a crash between write and commit. Returns
   * the records to produce (e.g. dead letters for what the store refused) before the offsets are
   * committed: at least once, like the write.
   */
  readonly write: (records: readonly ConsumedRecord[], source: TopicPartition) => Promise<readonly ProducedRecord[] | void>;
}

export interface RunningConsumer {
  /** Stops fetching, lets the batch in hand finish, commits and leaves the group. */
  stop(): Promise<void>;
}
