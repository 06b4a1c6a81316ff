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

/** Positions per account of one fills partition; the positions topic is both output and changelog. */
export function createPositionsHandler(metrics: ServiceMetrics, logger: Logger): StatefulHandler<PositionBook> {
  return {
    restore: (entries) => {
      const book = new PositionBook();
      for (const entry of entries) {
        if (entry.value === null) continue;
        const position = decodeMessage(Position, entry.value);
        if (position.ok) book.restoreSnapshot(position.value);
        else logger.error({ key: entry.key, reason: position.reason }, 'unreadable position snapshot in the changelog');
      }
      return book;
    },
    process: (book, records, source) => {
      const touched = new Set<number>();
      for (const record of records) {
        const fill = decodeMessage(Fill, record.value);
        if (!fill.ok) {
          metrics.rejected++;
          logger.warn({ ...source, offset: record.offset, reason: fill.reason }, 'skipped an invalid fill');
          continue;
        }
        touched.add(book.apply(fill.value).taxpayerId);
      }
      const changelog = [...touched].map((taxpayerId) => ({
        key: String(taxpayerId),
        value: Buffer.from(JSON.stringify(PositionBook.snapshot(book.accounts.get(taxpayerId)!))),
      }));
      metrics.produced += changelog.length;
      return { outputs: [], changelog };
    },
  };
}
