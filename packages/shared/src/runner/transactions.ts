/**
 * Exactly-once stages: owners, each with one transactional producer (one per slot, or one per
 * instance), and one transaction at a time per owner that commits a lane's outputs with its input
 * offsets (see index.ts).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { slotAssigner, slotOf, stageProducer, type GroupOffsets, type StageProducer } from '../kafka.ts';
import type { ServiceMetrics } from '../metrics.ts';
import { addCounts, countOutputs, openOnce, runsBySource, startConsumer, type BatchContext, type Lane } from './lanes.ts';
import type { RunnerOptions, RunningConsumer, TransformOptions } from './options.ts';
import { tpKey, type ConsumedRecord, type ProducedRecord, type TopicPartition } from './records.ts';
import { FENCED, isAny, REBALANCING, retrying, Stopped, withTimeout } from './retry.ts';
import { readStableOffsets, readStableOffsetsOf } from './offsets.ts';

/** Times the steps of one operation into the service's metrics. */
class StepTimer {
  private readonly metrics: ServiceMetrics;
  private readonly started = performance.now();
  private last = this.started;

  constructor(metrics: ServiceMetrics) {
    this.metrics = metrics;
  }

  step(what: string): void {
    const now = performance.now();
    this.metrics.time(what, now - this.last);
    this.last = now;
  }

  total(what: string): void {
    this.metrics.time(what, performance.now() - this.started);
  }
}

/**
 * The owner of one slot in this process: the slot's transactional producer (its id names the slot,
 * so whoever opens it fences any earlier owner and settles its open transaction) and the group's
 * committed offsets as they were right after that, per topic-partition.
 */
export interface SlotOwner {
  readonly slot: number;
  readonly producer: StageProducer;
  /** The next offset to process per `topic-partition`; records below it were committed already. */
  readonly committed: Map<string, bigint>;
  /** The tasks (partition numbers of the inputs) whose work this owner commits. */
  readonly owns: (partition: number) => boolean;
  /**
   * With one producer per instance: the group member and generation the owner was opened in. Its
   * offset commits carry them, so they are refused once the group has moved on (KIP-447), and
   * only the partitions assigned in that generation are in `committed` (others are not processed).
   */
  readonly member?: GroupMember;
}

/** A member of a consumer group in one generation (from the consumer's join). */
export interface GroupMember {
  readonly generationId: number;
  readonly memberId: string;
  /** Every partition assigned to it in that generation, and their `topic-partition` keys. */
  readonly partitions: readonly TopicPartition[];
  readonly assigned: ReadonlySet<string>;
}

/** A slot's new owner fences the old one by id, so a crashed owner's transaction is settled then; the timeout is the last resort. */
const SLOT_TRANSACTION_TIMEOUT_MS = 60_000;

async function openSlotOwner(options: RunnerOptions & { readonly transactionalIdPrefix: string }, slot: number): Promise<SlotOwner> {
  const slots = options.slots ?? 1;
  const owns = (partition: number) => slotOf(partition, slots) === slot;
  const producer = stageProducer(options.kafka, `${options.transactionalIdPrefix}-slot-${slot}`, SLOT_TRANSACTION_TIMEOUT_MS);
  try {
    options.logger.debug({ slot }, 'opening slot: fencing earlier owners');
    // InitProducerId fences any earlier owner and completes its pending transaction, so the
    // committed offsets (and changelogs) read after it are final.
    await withTimeout("fencing the slot's transactional id", producer.connect());
    const committed = await withTimeout('reading committed offsets', readStableOffsets(options.kafka, options.groupId, options.topics, (tp) => owns(tp.partition)), 120_000);
    // Logged so that a transaction processed twice can be traced to the offsets its owner started from.
    options.logger.info({ slot, committed: Object.fromEntries([...committed].map(([k, v]) => [k, v.toString()])) }, 'slot opened: committed offsets read after fencing');
    return { slot, producer, committed, owns };
  } catch (error) {
    await producer.disconnect().catch(() => undefined);
    throw error;
  }
}

/**
 * A transaction that an instance crashed in holds its partitions back from their next owner until
 * the coordinator aborts it (after this timeout): with one producer per instance nobody else has
 * its transactional id to fence it with. Kafka Streams uses 10 s for the same reason.
 */
const INSTANCE_TRANSACTION_TIMEOUT_MS = 15_000;

/**
 * The owner of this instance's work in one generation of the group: its one transactional
 * producer (its id is this process's own, so opening it settles only this process's earlier
 * transaction) and the committed offsets of the partitions assigned to it then. An earlier owner
 * of those partitions in another process is not fenced by id: its offset commits carry its older
 * generation and are refused (KIP-447), and an open transaction of it that already holds offsets
 * for them is waited for (readStableOffsets) before anything is read or restored.
 */
async function openInstanceOwner(options: RunnerOptions & { readonly transactionalIdPrefix: string }, transactionalId: string, member: GroupMember): Promise<SlotOwner> {
  const producer = stageProducer(options.kafka, transactionalId, INSTANCE_TRANSACTION_TIMEOUT_MS);
  try {
    await withTimeout('initialising the transactional producer', producer.connect());
    const committed = await withTimeout('reading committed offsets', readStableOffsetsOf(options.kafka, options.groupId, member.partitions), 120_000);
    const partitions = new Set(member.partitions.map((tp) => tp.partition));
    options.logger.info(
      { transactionalId, generationId: member.generationId, committed: Object.fromEntries([...committed].map(([k, v]) => [k, v.toString()])) },
      'transactional producer opened for this generation: committed offsets read',
    );
    return { slot: 0, producer, committed, owns: (partition) => partitions.has(partition), member };
  } catch (error) {
    await producer.disconnect().catch(() => undefined);
    throw error;
  }
}

export interface SlotWork {
  readonly run: BatchContext;
  /** The run's records at or above the committed offset. */
  readonly fresh: readonly ConsumedRecord[];
}

/** The runs of a lane with what is left of them once the records committed already are dropped. */
export function freshWork(owner: SlotOwner, runs: readonly BatchContext[]): SlotWork[] {
  const work: SlotWork[] = [];
  for (const run of runs) {
    const key = tpKey(run.source);
    const floor = owner.committed.get(key);
    if (floor === undefined) {
      // Fetched in an earlier generation for a partition this one does not assign here: not ours to commit.
      if (owner.member !== undefined && !owner.member.assigned.has(key)) continue;
      // Ours, but its committed offset was not read: processing it from anywhere could repeat work.
      throw new Error(`no committed offset read for ${key}, which this owner commits`);
    }
    // Records are in offset order: usually the first is fresh already and nothing is filtered.
    const first = run.records[0];
    const fresh = first === undefined || BigInt(first.offset) >= floor ? run.records : run.records.filter((r) => BigInt(r.offset) >= floor);
    // A run without records to process (all of them left out when fetched) still moves its offset on.
    if (fresh.length > 0 || (run.records.length === 0 && BigInt(run.nextOffset) > floor)) work.push({ run, fresh });
  }
  return work;
}

/** A piece of a transaction: its work, the records to produce for it, and other partitions whose state it changed. */
export interface Piece {
  readonly work: readonly SlotWork[];
  readonly records: readonly ProducedRecord[];
  readonly touched: readonly TopicPartition[];
}

/** The work of a piece without its records, for after the piece is sent (offsets and partitions only). */
const settledWork = (work: readonly SlotWork[]): SlotWork[] =>
  // Field by field: a spread would read a queued part's records (made again) and keep its release.
  work.map(({ run: { control, source, fetchedOffset, nextOffset, highWatermark, lane } }) => ({ run: { control, source, records: [], fetchedOffset, nextOffset, highWatermark, lane }, fresh: [] }));

/**
 * One transaction: the records of `first` and of each further piece `next` gives (undefined: no
 * more), then the input offsets after all of them, then commit. Each piece is sent while the next
 * is prepared, and let go once sent. The offsets go with the last piece's records: from the first
 * record sent until the commit markers are written, the output partitions' last stable offset is
 * held back (for every reader), so that stretch is kept short. Returns the work committed.
 */
async function commitWork(owner: SlotOwner, groupId: string, metrics: ServiceMetrics, first: () => Promise<Piece | undefined>, next?: () => Promise<Piece | undefined>): Promise<SlotWork[] | undefined> {
  const offsetsOf = (work: readonly SlotWork[], alsoTouched: readonly TopicPartition[]): GroupOffsets['topics'] => {
    const offsets = new Map<string, Map<number, string>>();
    const add = (tp: TopicPartition, offset: string) => {
      let partitions = offsets.get(tp.topic);
      if (partitions === undefined) offsets.set(tp.topic, (partitions = new Map()));
      partitions.set(tp.partition, offset);
    };
    // Partitions whose state changed without their input moving are committed at their current
    // offset: so the transaction is refused with a stale generation, and is waited for by their next
    // owner's readStableOffsets, like one that processed them.
    for (const tp of alsoTouched) {
      const at = owner.committed.get(tpKey(tp));
      if (at !== undefined) add(tp, at.toString());
    }
    for (const { run } of work) add(run.source, run.nextOffset);
    return [...offsets].map(([topic, partitions]) => ({ topic, partitions: [...partitions].map(([partition, offset]) => ({ partition, offset })) }));
  };
  // No variable here holds a piece once it is sent (`first` makes it, `piece` lets it go, the
  // committed work keeps offsets only): the producer has encoded its records into their batches by
  // then (unless it had to look the leaders up first), so they die young instead of outliving the
  // next piece.
  let piece = await first();
  if (piece === undefined) return undefined;
  const timer = new StepTimer(metrics);
  const transaction = await owner.producer.transaction();
  const committed: SlotWork[] = [];
  const touched: TopicPartition[] = [];
  try {
    for (;;) {
      const sending = transaction.send(piece.records);
      // Settled below in every case; a failure is not left unhandled while the next piece is prepared.
      sending.catch(() => undefined);
      committed.push(...settledWork(piece.work));
      touched.push(...piece.touched);
      piece = undefined;
      const following = next === undefined ? undefined : await next().catch(async (error: unknown) => {
        await sending.catch(() => undefined);
        throw error;
      });
      if (following !== undefined) {
        await sending;
        piece = following;
        continue;
      }
      // AddOffsetsToTxn + TxnOffsetCommit run alongside the last AddPartitionsToTxn + Produce: two
      // round trips before the commit instead of four. Both settle before the commit or the abort.
      const settled = await Promise.allSettled([
        transaction.sendOffsets({ groupId, member: owner.member, topics: offsetsOf(committed, touched) }),
        sending,
      ]);
      for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
      break;
    }
    timer.step('txn.send');
    await transaction.commit();
    timer.step('txn.commit');
    timer.total('txn');
  } catch (error) {
    await transaction.abort().catch(() => undefined);
    throw error;
  }
  for (const { run } of committed) owner.committed.set(tpKey(run.source), BigInt(run.nextOffset));
  return committed;
}

/** Runs `fn` after every earlier call for the same key. */
export function keyedLock<K>(): (key: K, fn: () => Promise<void>) => Promise<void> {
  const locks = new Map<K, Promise<void>>();
  return (key, fn) => {
    const previous = locks.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    locks.set(key, settled);
    void settled.then(() => {
      if (locks.get(key) === settled) locks.delete(key);
    });
    return next;
  };
}

const laneKey = (slot: number) => `slot-${slot}`;

/**
 * The slot machinery both exactly-once runners share: one owner per slot (opened on first use,
 * closed when the slot is revoked or a transaction fails), one transaction at a time per slot.
 * `prepare` turns a transaction's fresh work into the records to produce; `outputs` are what the
 * metrics count (the rest are changelog entries).
 */
export async function runSlots<O extends SlotOwner>(
  options: RunnerOptions & { readonly transactionalIdPrefix: string; readonly skipRecord?: ((topic: string, data: Buffer, headersAt: number) => boolean) | undefined },
  extend: (owner: SlotOwner) => O,
  /** `touched`: other partitions whose state the records change (committed at their current offsets, see commitWork). */
  prepare: (owner: O, work: readonly SlotWork[]) => Promise<{ outputs: readonly ProducedRecord[]; records: readonly ProducedRecord[]; touched?: readonly TopicPartition[] }>,
  /** After a transaction committed (a failure here starts over with a fresh owner, as a failed commit does). */
  committed?: (owner: O, work: readonly SlotWork[]) => void,
): Promise<RunningConsumer> {
  const { kafka, logger, metrics, groupId } = options;
  const perInstance = options.producerPer === 'instance';
  // One producer per instance: every partition is its own "slot" to the assigner, so the group
  // deals partition numbers round robin over its members (co-partitioned inputs stay together).
  const slots = perInstance ? 0 : (options.slots ?? 1);
  const owners = new Map<number, Promise<O>>();
  const withSlotLock = keyedLock<number>();
  /** With one producer per instance: this process's own transactional id, and its place in the group now. */
  const transactionalId = `${options.transactionalIdPrefix}-${hostname()}-${randomUUID().slice(0, 8)}`;
  let member: GroupMember | undefined;

  const ownerFor = (slot: number) =>
    openOnce(owners, slot, async () => {
      if (!perInstance) return extend(await openSlotOwner(options, slot));
      if (member === undefined) throw new Error('no partitions assigned yet');
      return extend(await openInstanceOwner(options, transactionalId, member));
    });
  /** An owner opened in an earlier generation is closed: its commits would be refused, and its partitions may have moved. */
  const closeIfStale = async (): Promise<void> => {
    const open = owners.get(0);
    if (open === undefined) return;
    const owner = await open.catch(() => undefined);
    if (owners.get(0) === open && owner?.member?.generationId !== member?.generationId) await closeOwner(0);
  };
  const closeOwner = async (slot: number): Promise<void> => {
    const entry = owners.get(slot);
    owners.delete(slot);
    if (entry !== undefined) await (await entry.catch(() => undefined))?.producer.disconnect().catch(() => undefined);
  };

  const streamMs = options.transactionStreamMs ?? 0;
  const processLane = (entries: readonly BatchContext[], isStopping: () => boolean, more?: () => BatchContext[] | undefined): Promise<void> => {
    const last = entries[entries.length - 1]!;
    const slot = perInstance ? 0 : slotOf(entries[0]!.source.partition, slots);
    // No variable here holds the records across the transaction (see release below).
    return withSlotLock(slot, () =>
      retrying('transaction', { source: last.source, lane: last.lane, control: last.control }, options, isStopping, async () => {
        if (perInstance) await closeIfStale();
        const owner = await ownerFor(slot);
        const fresh = (pieceRuns: readonly BatchContext[]) => {
          try {
            return freshWork(owner, pieceRuns);
          } catch (error) {
            // The owner's committed offsets are incomplete: open it again (and read them again).
            void closeOwner(slot);
            throw error;
          }
        };
        let work: SlotWork[] | undefined = fresh(runsBySource(entries));
        /** Where the transaction's first piece ends, per topic-partition (for the log if it fails). */
        const through = Object.fromEntries(work.map((w) => [tpKey(w.run.source), w.run.nextOffset]));
        const began = performance.now();
        /** Whether the transaction took more of the lane than `entries`: it cannot be retried in place then. */
        let tookMore = false;
        let counts = { consumed: 0, produced: 0, dlq: 0 };
        const prepared = async (pieceWork: readonly SlotWork[]): Promise<Piece> => {
          const timer = new StepTimer(metrics);
          const { outputs, records, touched } = await prepare(owner, pieceWork);
          timer.step('txn.process');
          const c = countOutputs(outputs);
          counts = { consumed: counts.consumed + pieceWork.reduce((n, w) => n + w.fresh.length, 0), produced: counts.produced + c.produced, dlq: counts.dlq + c.dlq };
          return { work: pieceWork, records, touched: touched ?? [] };
        };
        /** The next piece of the lane, while the transaction is young enough (skipping pieces with nothing fresh). */
        const next =
          more === undefined || streamMs <= 0
            ? undefined
            : async (): Promise<Piece | undefined> => {
                while (performance.now() - began < streamMs && !isStopping()) {
                  const taken = more();
                  if (taken === undefined) return undefined;
                  tookMore = true;
                  const pieceWork = fresh(runsBySource(taken));
                  if (pieceWork.length === 0) continue;
                  const piece = await prepared(pieceWork);
                  // Taken into this transaction only: fetched again, not retried in place, if it fails.
                  for (const entry of taken) entry.release?.();
                  return piece;
                }
                return undefined;
              };
        if (work.length === 0 && next === undefined) return;
        /**
         * The first piece; once it is prepared its input records are let go (made again from the
         * fetched bytes if this attempt is retried in place), so that they die young rather than
         * being held for the whole transaction.
         */
        const first = async (): Promise<Piece | undefined> => {
          const pieceWork = work!;
          work = undefined;
          if (pieceWork.length === 0) {
            for (const entry of entries) entry.release?.();
            return next!();
          }
          const piece = await prepared(pieceWork);
          for (const entry of entries) entry.release?.();
          return piece;
        };
        let committedWork: SlotWork[] | undefined;
        try {
          committedWork = await commitWork(owner, groupId, metrics, first, next);
          if (committedWork === undefined) return;
          committed?.(owner, committedWork);
        } catch (error) {
          // The error itself is logged by `retrying`, once per outage; this records what was at stake.
          logger.info(
            { slot, through, tookMore },
            'transaction failed (its outcome is settled when the slot is opened again)',
          );
          // Start over with a fresh owner: re-initialising the producer settles the transaction's
          // outcome and re-reads the committed offsets (and any state), so an ambiguous commit is
          // never produced twice and uncommitted state changes are dropped.
          await closeOwner(slot);
          if (tookMore && !(error instanceof Stopped)) {
            // Its later pieces were let go: fetched again from the transaction's first record.
            if (isAny(error, FENCED) || isAny(error, REBALANCING)) logger.info({ slot }, 'transaction abandoned: the partition moved to another member');
            else logger.warn({ slot, err: error }, 'a transaction that took several pieces of its lane failed; fetching them again');
            throw new Stopped();
          }
          throw error;
        }
        addCounts(metrics, counts);
      }),
    );
  };

  const onAssignment = async (assigned: readonly TopicPartition[], lanes: ReadonlyMap<string, Lane>, group: { readonly generationId: number; readonly memberId: string }) => {
    metrics.keepLagOnly(new Set(assigned.map(tpKey)));
    if (perInstance) {
      member = { generationId: group.generationId, memberId: group.memberId, partitions: assigned, assigned: new Set(assigned.map(tpKey)) };
      // After the transaction in hand (which commits, or is refused with the old generation).
      await withSlotLock(0, closeIfStale);
      return;
    }
    const keep = new Set(assigned.map((tp) => slotOf(tp.partition, slots)));
    const revoked = [...owners.keys()].filter((slot) => !keep.has(slot));
    await Promise.all(
      revoked.map(async (slot) => {
        await lanes.get(laneKey(slot))?.running;
        await withSlotLock(slot, () => closeOwner(slot));
      }),
    );
  };

  const onStop = async () => {
    await Promise.all([...owners.keys()].map((slot) => closeOwner(slot)));
  };

  if (perInstance) logger.info({ groupId, transactionalId }, 'starting exactly-once stage: one transactional producer for this instance');
  else logger.info({ groupId, transactionalIdPrefix: options.transactionalIdPrefix, slots }, 'starting exactly-once stage');
  return startConsumer(options, perInstance ? () => 'instance' : (tp) => laneKey(slotOf(tp.partition, slots)), processLane, onAssignment, onStop, slotAssigner(slots, logger));
}

/** Kafka → Kafka, exactly once (see the file comment). */
export function runTransform(options: TransformOptions): Promise<RunningConsumer> {
  return runSlots(
    options,
    (owner) => owner,
    async (_owner, work) => {
      const outputs: ProducedRecord[] = [];
      for (const { run, fresh } of work) outputs.push(...(await options.handle(fresh, run.source)));
      return { outputs, records: outputs };
    },
  );
}
