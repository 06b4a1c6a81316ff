/** Kafka records of a task ⇄ the matcher's facts: parsing, dead letters, executions out. */
import {
  ComponentOrder,
  deadLetter,
  describeIssues,
  PriceTick,
  TOPICS,
  type ConsumedRecord,
  type Execution,
  type Logger,
  type ProducedRecord,
  type ServiceMetrics,
  type StatefulHandler,
} from '@tradeflow/shared';
import type { z } from 'zod';
import { Matcher, MatcherState, StateChanges } from './matcher.ts';
import { SERVICE_NAME } from './split.ts';

function parse<T extends z.ZodType>(schema: T, record: ConsumedRecord): { ok: true; value: z.infer<T> } | { ok: false; reason: string } {
  if (record.value === null || record.value.length === 0) return { ok: false, reason: 'empty message' };
  let json: unknown;
  try {
    json = JSON.parse(record.value.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

export function createMatchHandler(matcher: Matcher, metrics: ServiceMetrics, logger: Logger): StatefulHandler<MatcherState> {
  return {
    restore: (entries) => matcher.restore(entries),
    process: (state, records, source) => {
      const changes = new StateChanges();
      const executions: Execution[] = [];
      const outputs: ProducedRecord[] = [];
      for (const record of records) {
        if (source.topic === TOPICS.prices) {
          const price = parse(PriceTick, record);
          if (price.ok) matcher.onPrice(state, price.value, changes, executions);
          else {
            metrics.rejected++;
            logger.warn({ ...source, offset: record.offset, reason: price.reason }, 'skipped an invalid price');
          }
        } else {
          const order = parse(ComponentOrder, record);
          if (order.ok) matcher.onOrder(state, order.value, changes, executions);
          else outputs.push(deadLetter(record, TOPICS.ordersDlq, order.reason, SERVICE_NAME));
        }
      }
      for (const execution of executions) outputs.push({ topic: TOPICS.executions, key: execution.symbol, value: JSON.stringify(execution) });
      return { outputs, changelog: matcher.changelogOf(state, changes) };
    },
  };
}
