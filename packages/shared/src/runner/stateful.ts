/** Kafka → Kafka with state, exactly once: tasks, their changelogs and durable stores (see index.ts). */
import { ConfigError } from '../config.ts';
import { eachToEnd, slotOf, type ChangelogEntry, type Kafka } from '../kafka.ts';
import { untilSuccess } from '../retry.ts';
import type { RunnerOptions, RunningConsumer } from './options.ts';
import { partitionFor, tpKey, type ConsumedRecord, type ProducedRecord, type RecordHeaders, type TopicPartition } from './records.ts';
import { runSlots, type SlotOwner } from './transactions.ts';
import { hasHeader } from '../wire/record-batches.ts';

/** A change of a task's state for its changelog: a ChangelogEntry as produced (its value may be text, written as UTF-8). */
export interface ChangelogChange {
  readonly key: string;
  readonly value: ChangelogEntry['value'] | string;
}

export interface StateUpdate {
  readonly outputs: readonly ProducedRecord[];
  /** Changes of the task's state, written to its changelog partition (value null deletes a key). */
  readonly changelog: readonly ChangelogChange[];
}

/** Rebuilds one task's state: `add` gets its changelog a batch at a time, oldest first (later entries of a key win, null deletes it). */
export interface StateRestorer<S> {
  add(entries: readonly ChangelogEntry[]): void | Promise<void>;
  /** The changelog is read to its end: the task's state. */
  end(): S;
}

/** The group's committed offsets of a task's inputs: the next offset per input topic. */
export type TaskOffsets = ReadonlyMap<string, bigint>;

export interface StatefulHandler<S> {
  /** Starts rebuilding a task's state from its changelog (a durable store first drops what it held of the task). */
  restore(partition: number): StateRestorer<S>;
  /** Applies one batch of one input topic-partition to the state, in place. */
  process(state: S, records: readonly ConsumedRecord[], source: TopicPartition): StateUpdate;
  /**
   * A durable store's state of a task, when it is exactly as of the group's committed offsets of
   * the task's inputs (so the changelog need not be read); undefined to restore it from the
   * changelog. Stages that apply their own outputs cannot use this (their state also changes
   * without their input offsets moving).
   */
  open?(partition: number, committed: TaskOffsets): S | undefined;
  /**
   * The task's state is now as of these committed offsets: called after every transaction that
   * committed work of the task and after a restore. A durable store writes the changes made since
   * the last call together with the offsets; until then they are held in memory (a transaction
   * that fails is never checkpointed: its state is dropped and opened or restored again).
   */
  checkpoint?(state: S, committed: TaskOffsets): void;
  /** checkpoint() of several tasks at once (what one Kafka transaction committed), when a store can write them together. */
  checkpointAll?(tasks: readonly (readonly [state: S, committed: TaskOffsets])[]): void;
}

/** A StatefulHandler's restore for state that is rebuilt from all its changelog entries at once. */
export function restoreAll<S>(build: (entries: readonly ChangelogEntry[], partition: number) => S): (partition: number) => StateRestorer<S> {
  return (partition) => {
    const all: ChangelogEntry[] = [];
    return {
      add: (entries) => {
        for (const entry of entries) all.push(entry);
      },
      end: () => build(all, partition),
    };
  };
}

export interface StatefulOptions<S> extends RunnerOptions {
  readonly transactionalIdPrefix: string;
  /** Compacted topic with the same partition count as the inputs. */
  readonly changelogTopic: string;
  readonly handler: StatefulHandler<S>;
  /**
   * One of `topics` that the handler also writes to. Such an output whose partition (given, or the
   * key's under the default partitioner) is in the transaction's slot is applied to that
   * partition's state right away, in the same transaction, instead of after a trip through Kafka.
   * It is still written (to that partition, with APPLIED_HEADER = the group id) for every other
   * reader, and this group skips it when it reads it back: the record, the state change and the
   * input offsets commit together or not at all, so it is applied exactly once either way.
   */
  readonly applyOwnOutputs?: string;
  /** Called after a task's state was rebuilt (for metrics and logs). */
  readonly onRestored?: (partition: number, state: S, entries: number, ms: number) => void;
}

/** Marks a record a stateful stage applied when it produced it (value: the stage's group id). */
export const APPLIED_HEADER = 'tradeflow-applied';

const asBuffer = (v: string | Buffer | null): Buffer | null => (v === null || Buffer.isBuffer(v) ? v : Buffer.from(v));

/**
 * An own output applied where it is produced: encoded once, so the record sent and the one the
 * handler sees (as if consumed; offset unknown yet: -1) share their bytes.
 */
function appliedOutput(output: ProducedRecord, partition: number, appliedBy: Buffer): { sent: ProducedRecord; seen: ConsumedRecord } {
  const key = asBuffer(output.key);
  const value = asBuffer(output.value);
  const headers: RecordHeaders = { [APPLIED_HEADER]: appliedBy };
  for (const [k, v] of Object.entries(output.headers ?? {})) if (k !== APPLIED_HEADER) headers[k] = asBuffer(v)!;
  return {
    sent: { topic: output.topic, key, value, partition, headers: headers as Record<string, Buffer> },
    seen: { topic: output.topic, partition, offset: '-1', key, value, headers, timestamp: String(Date.now()), ...(output.parsed === undefined ? {} : { parsed: output.parsed }) },
  };
}

/** The partition count the topics share; a ConfigError (not retried) when they differ. */
async function equalPartitionCounts(kafka: Kafka, topics: readonly string[], groupId: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const metadata = await admin.fetchTopicMetadata({ topics: [...topics] });
    const counts = metadata.topics.map((t) => t.partitions.length);
    if (new Set(counts).size !== 1) {
      const found = metadata.topics.map((t) => `${t.name}=${t.partitions.length}`).join(', ');
      throw new ConfigError(`${groupId}: the inputs of a stage that applies its own outputs need equal partition counts, found ${found}`);
    }
    return counts[0]!;
  } finally {
    await admin.disconnect();
  }
}

/** Kafka → Kafka with state, exactly once (see the file comment). */
export async function runStateful<S>(options: StatefulOptions<S>): Promise<RunningConsumer> {
  const { kafka, logger, groupId } = options;
  const ownTopic = options.applyOwnOutputs;
  if (ownTopic !== undefined && !options.topics.includes(ownTopic)) throw new Error(`applyOwnOutputs: ${ownTopic} is not one of the inputs (${options.topics.join(', ')})`);
  /** With applyOwnOutputs every input has ownTopic's partition count (the tasks span all inputs): read once. */
  let ownCount = 0;
  const appliedBy = Buffer.from(groupId);
  /** Compared as bytes: no string per record read back. */
  const appliedHere = (record: ConsumedRecord) => {
    if (record.topic !== ownTopic) return false;
    const mark = record.headers[APPLIED_HEADER];
    return Buffer.isBuffer(mark) ? mark.equals(appliedBy) : mark !== undefined && String(mark) === groupId;
  };
  /** The state of each task (input partition) of a slot, rebuilt from its changelog partition on first use. */
  type StatefulOwner = SlotOwner & { readonly states: Map<number, S> };

  const checkpoint = options.handler.checkpoint?.bind(options.handler);
  const checkpointAll = options.handler.checkpointAll?.bind(options.handler);
  const committedOf = (owner: StatefulOwner, partition: number): TaskOffsets =>
    new Map(options.topics.map((topic) => [topic, owner.committed.get(tpKey({ topic, partition })) ?? 0n]));

  /**
   * Opens the state of these tasks from a durable store when it is current, else rebuilds it from
   * their changelog partitions (the slot is fenced, so they are final), a fetch at a time.
   */
  const restore = async (owner: StatefulOwner, partitions: readonly number[]): Promise<void> => {
    const started = Date.now();
    const toRead: number[] = [];
    for (const partition of partitions) {
      const opened = options.handler.open?.(partition, committedOf(owner, partition));
      if (opened === undefined) {
        toRead.push(partition);
        continue;
      }
      owner.states.set(partition, opened);
      options.onRestored?.(partition, opened, 0, Date.now() - started);
      logger.info({ partition, ms: Date.now() - started }, 'task state opened from the local store (as of the committed offsets)');
    }
    if (toRead.length === 0) return;
    const restorers = new Map(toRead.map((partition) => [partition, { restorer: options.handler.restore(partition), entries: 0 }]));
    await eachToEnd(kafka, options.changelogTopic, toRead, groupId, async (partition, entries) => {
      const task = restorers.get(partition)!;
      task.entries += entries.length;
      await task.restorer.add(entries);
    });
    for (const [partition, { restorer, entries }] of restorers) {
      const state = restorer.end();
      options.handler.checkpoint?.(state, committedOf(owner, partition));
      owner.states.set(partition, state);
      options.onRestored?.(partition, state, entries, Date.now() - started);
      logger.info({ partition, changelogEntries: entries, ms: Date.now() - started }, 'task state restored');
    }
  };

  if (ownTopic !== undefined && options.handler.open !== undefined) {
    throw new ConfigError(`${groupId}: a stage that applies its own outputs keeps its state in memory (its handler cannot have open)`);
  }
  if (ownTopic !== undefined) {
    ownCount = await untilSuccess('reading the partition counts of the inputs', logger, () => equalPartitionCounts(kafka, options.topics, groupId), options.retryMaxMs);
  }

  const appliedName = Buffer.from(APPLIED_HEADER);
  return runSlots<StatefulOwner>(
    // Own outputs this stage applied when it produced them are not even made into records when read back.
    ownTopic === undefined ? options : { ...options, skipRecord: (topic, data, headersAt) => topic === ownTopic && hasHeader(data, headersAt, appliedName, appliedBy) },
    (owner) => ({ ...owner, states: new Map<number, S>() }),
    async (owner, work) => {
      // Applying own outputs can reach any task of the owner, so all of them are restored then.
      const needed = ownTopic === undefined ? work.map((w) => w.run.source.partition) : Array.from({ length: ownCount }, (_, p) => p).filter(owner.owns);
      const missing = [...new Set(needed)].filter((p) => !owner.states.has(p));
      if (missing.length > 0) await restore(owner, missing);
      const outputs: ProducedRecord[] = [];
      // Per task, later changes of a key replace earlier ones within the transaction.
      const changelogs = new Map<number, Map<string, ChangelogChange['value']>>();
      const apply = (records: readonly ConsumedRecord[], source: TopicPartition): void => {
        const update = options.handler.process(owner.states.get(source.partition)!, records, source);
        let changelog = changelogs.get(source.partition);
        if (changelog === undefined) changelogs.set(source.partition, (changelog = new Map()));
        for (const entry of update.changelog) {
          changelog.delete(entry.key);
          changelog.set(entry.key, entry.value);
        }
        // Own outputs that stay in the slot: applied after this batch, one batch per task, in order.
        let local: Map<number, ConsumedRecord[]> | undefined;
        for (const output of update.outputs) {
          const partition = output.topic === ownTopic ? partitionFor(output, ownCount) : -1;
          if (partition < 0 || !owner.owns(partition)) {
            outputs.push(output);
            continue;
          }
          const { sent, seen } = appliedOutput(output, partition, appliedBy);
          outputs.push(sent);
          local ??= new Map();
          const batch = local.get(partition);
          if (batch === undefined) local.set(partition, [seen]);
          else batch.push(seen);
        }
        if (local !== undefined) for (const [partition, batch] of local) apply(batch, { topic: ownTopic!, partition });
      };
      for (const { run, fresh } of work) {
        const records = ownTopic === undefined || run.source.topic !== ownTopic ? fresh : fresh.filter((r) => !appliedHere(r));
        if (records.length > 0) apply(records, run.source);
      }
      const changes: ProducedRecord[] = [...changelogs].flatMap(([partition, changelog]) =>
        [...changelog].map(([key, value]) => ({ topic: options.changelogTopic, partition, key, value })),
      );
      // With one producer per instance, a task whose state changed only through an applied output
      // has its offsets in the transaction too (see commitWork).
      const touched = owner.member === undefined ? [] : [...changelogs.keys()].flatMap((partition) => options.topics.map((topic) => ({ topic, partition })));
      return { outputs, records: [...outputs, ...changes], touched };
    },
    checkpoint === undefined
      ? undefined
      : (owner, work) => {
          const partitions = [...new Set(work.map((w) => w.run.source.partition))];
          if (checkpointAll !== undefined) checkpointAll(partitions.map((partition) => [owner.states.get(partition)!, committedOf(owner, partition)] as const));
          else for (const partition of partitions) checkpoint(owner.states.get(partition)!, committedOf(owner, partition));
        },
  );
}