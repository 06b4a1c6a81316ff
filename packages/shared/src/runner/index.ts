/**
 * The one consume → handle → produce/write → commit loop that every service uses, so delivery
 * semantics live in this folder only:
 *
 * - records.ts, options.ts: what the runners consume and produce, and their options;
 * - lanes.ts: the consumer, its lanes, and how queued batches are taken;
 * - retry.ts: error kinds and the retry of a lane's work;
 * - transactions.ts: slots, their transactional producers, runTransform;
 * - sink.ts: runSink; stateful.ts: runStateful.
 *
 * Only ../kafka.ts imports the Kafka client.
 *
 * - runTransform: Kafka in, Kafka out, exactly once. Input partitions are grouped into slots
 *   (partition p of every input topic is in slot p mod `slots`); the group assigns whole slots, and
 *   each slot has one transactional producer (transactional id = prefix + slot), so whoever owns a
 *   slot fences any earlier owner (a crashed process or a zombie after a rebalance). The outputs of
 *   everything a slot has fetched and the consumer offsets after it are committed in one
 *   transaction. When a slot's producer is (re)initialised the group's committed offsets are read
 *   again, and records below them (committed by an earlier owner) are skipped.
 *   With `producerPer: 'instance'` each instance has one transactional producer of its own and one
 *   lane instead; partition p of every input goes to member p mod members, offset commits carry
 *   the member's group generation (refused once the group moved on, KIP-447), and an owner is
 *   opened for every generation, reading its partitions' offsets with require_stable (which waits
 *   for an earlier owner's open transaction).
 * - runSink: Kafka in, an external store out (InfluxDB), at least once with idempotent writes:
 *   offsets are committed only after the store acknowledged the batch.
 * - runStateful: Kafka in, Kafka out, exactly once, with state. A task is partition p of every
 *   input topic (co-partitioned, in the same slot); its state is rebuilt from partition p of a
 *   changelog topic (or opened from a durable store that was checkpointed with the committed
 *   offsets, when they still match), and each transaction of the slot commits its outputs, its tasks' state changes
 *   (to their changelog partitions) and its input offsets together. With `applyOwnOutputs`, an
 *   output to one of its own input topics whose partition is in the same slot is applied to that
 *   task's state in the same transaction (one hop less) and marked, and skipped when read back.
 *
 * Fetching does not wait for transactions: batches queue in their slot's lane while it commits,
 * and the lane takes everything queued as its next transaction (see Lane).
 *
 * All retry with capped exponential backoff while Kafka or the store is unreachable, and stop
 * cleanly: stop() lets the batch in hand finish (or abandons it uncommitted if it cannot), then
 * leaves the group.
 */
export type { ConsumedRecord, ProducedRecord, RecordHeaders, TopicPartition } from './records.ts';
export { partitionFor, produceChunks } from './records.ts';
export type { RunnerOptions, RunningConsumer, SinkOptions, TransformOptions } from './options.ts';
export { takeUpTo } from './lanes.ts';
export { readStableOffsets } from './offsets.ts';
export { runTransform } from './transactions.ts';
export { runSink } from './sink.ts';
export { APPLIED_HEADER, restoreAll, runStateful } from './stateful.ts';
export type { ChangelogChange, StatefulHandler, StatefulOptions, StateRestorer, StateUpdate, TaskOffsets } from './stateful.ts';
