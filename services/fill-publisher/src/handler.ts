/** Kafka records ⇄ fills and positions: parsing, dead letters, outputs and changelog entries. */
import {
  deadLetter,
  decodeMessage,
  Execution,
  Fill,
  Position,
  TOPICS,
  type ConsumedRecord,
  type Logger,
  type ProducedRecord,
  type ServiceMetrics,
  type StatefulHandler,
} from '@tradeflow/shared';
import { fillsOf } from './fills.ts';
import { PositionBook } from './positions.ts';
import type { PositionStore, TaskStore } from './store.ts';

export const SERVICE_NAME = 'fill-publisher';

/** A batch of executions → one fill per allocation keyed by taxpayer_id; invalid ones dead-lettered. */
export function fillExecutions(records: readonly ConsumedRecord[], now: number): ProducedRecord[] {
  const out: ProducedRecord[] = [];
  for (const record of records) {
    const execution = decodeMessage(Execution, record.value);
    if (!execution.ok) {
      out.push(deadLetter(record, TOPICS.executionsDlq, execution.reason, SERVICE_NAME));
      continue;
    }
    for (const fill of fillsOf(execution.value, now)) out.push({ topic: TOPICS.fills, key: String(fill.taxpayer_id), value: JSON.stringify(fill) });
  }
  return out;
}

/**
 * A task's positions: with a store, `book` holds only the accounts changed since the last
 * checkpoint (the others are read from the store when a fill reaches them) and `changed` their
 * snapshots as produced, written to the store as they are once the transaction committed.
 */
export interface PositionsTask {
  readonly book: PositionBook;
  readonly store?: TaskStore | undefined;
  readonly changed: Map<number, string>;
}

/**
 * Positions per account of one fills partition; the positions topic is both output and changelog.
 * With a store the positions live on disk (see store.ts), else all of them in memory.
 */
export function createPositionsHandler(metrics: ServiceMetrics, logger: Logger, store?: PositionStore): StatefulHandler<PositionsTask> {
  const decodeSnapshot = (bytes: Buffer | null, key: string, partition: number): Position | undefined => {
    const position = decodeMessage(Position, bytes);
    if (position.ok) return position.value;
    logger.error({ partition, key, reason: position.reason }, 'unreadable position snapshot in the changelog: the account starts from zero');
    return undefined;
  };
  const taskOf = (partition: number, tasks: TaskStore): PositionsTask => ({
    book: new PositionBook((taxpayerId) => {
      const stored = tasks.get(taxpayerId);
      if (stored === undefined) return undefined; // a new account
      // Written by this stage: its own text, which a fill may patch as it is.
      if (typeof stored === 'string') return { taxpayerId, text: stored };
      // Restored from the changelog: the record's bytes, written by anything.
      const account = PositionBook.accountOf(stored);
      if (account !== undefined) return account;
      const snapshot = decodeSnapshot(stored, String(taxpayerId), partition);
      return snapshot === undefined ? undefined : PositionBook.fromSnapshot(snapshot);
    }),
    store: tasks,
    changed: new Map(),
  });
  /** The tasks' changes since their last checkpoint and the offsets they are as of, in one store transaction. */
  const checkpointAll = (tasks: readonly (readonly [PositionsTask, ReadonlyMap<string, bigint>])[]) => {
    store!.writeAll(tasks.map(([task, committed]) => ({ task: task.store!, snapshots: task.changed, offsets: committed })));
    for (const [task] of tasks) {
      task.changed.clear();
      task.book.accounts.clear();
    }
  };
  return {
    restore: (partition) => {
      if (store === undefined) {
        const book = new PositionBook();
        return {
          add: (entries) => {
            for (const entry of entries) {
              if (entry.value === null) book.accounts.delete(Number(entry.key));
              else {
                const snapshot = decodeSnapshot(entry.value, entry.key, partition);
                if (snapshot !== undefined) book.restoreSnapshot(snapshot);
              }
            }
          },
          end: () => ({ book, changed: new Map() }),
        };
      }
      // Into the store as they are: the bytes are decoded when a fill reaches the account.
      const tasks = store.task(partition);
      tasks.clear();
      return {
        add: (entries) => {
          const snapshots: (readonly [number, Buffer | null])[] = [];
          for (const entry of entries) {
            const taxpayerId = Number(entry.key);
            if (Number.isSafeInteger(taxpayerId) && entry.key !== '') snapshots.push([taxpayerId, entry.value]);
            else logger.error({ partition, key: entry.key }, 'a changelog record whose key is not a taxpayer id: skipped');
          }
          tasks.write(snapshots);
        },
        end: () => taskOf(partition, tasks),
      };
    },
    ...(store === undefined
      ? {}
      : {
          open: (partition: number, committed: ReadonlyMap<string, bigint>) => {
            const tasks = store.task(partition);
            return tasks.isAsOf(committed) ? taskOf(partition, tasks) : undefined;
          },
          checkpoint: (task: PositionsTask, committed: ReadonlyMap<string, bigint>) => checkpointAll([[task, committed]]),
          checkpointAll,
        }),
    process: (task, records, source) => {
      const { book } = task;
      const touched = new Set<number>();
      for (const record of records) {
        const fill = decodeMessage(Fill, record.value);
        if (!fill.ok) {
          metrics.rejected++;
          logger.warn({ ...source, offset: record.offset, reason: fill.reason }, 'skipped an invalid fill');
          continue;
        }
        book.apply(fill.value);
        touched.add(fill.value.taxpayer_id);
      }
      const changelog = [...touched].map((taxpayerId) => {
        const text = book.snapshotOf(taxpayerId);
        if (task.store !== undefined) task.changed.set(taxpayerId, text);
        // As text: the producer encodes it into its request (no buffer of its own per account).
        return { key: String(taxpayerId), value: text };
      });
      metrics.produced += changelog.length;
      return { outputs: [], changelog };
    },
  };
}
