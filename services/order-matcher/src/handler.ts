/** Kafka records of a task ⇄ the matcher's facts: parsing, dead letters, executions out. */
import {
  ComponentOrder,
  deadLetter,
  decodeMessage,
  PriceTick,
  restoreAll,
  TOPICS,
  type Execution,
  type Logger,
  type ProducedRecord,
  type ServiceMetrics,
  type StatefulHandler,
} from '@tradeflow/shared';
import { Matcher, MatcherState, StateChanges } from './matcher.ts';
import { SERVICE_NAME, splitOrders } from './split.ts';

export function createMatchHandler(matcher: Matcher, metrics: ServiceMetrics, logger: Logger): StatefulHandler<MatcherState> {
  return {
    restore: restoreAll((entries) => matcher.restore(entries)),
    process: (state, records, source) => {
      // Portfolio orders are only split (rule 1); the runner applies the components that stay in
      // this slot at once (applyOwnOutputs) and writes the rest to orders.components.
      if (source.topic === TOPICS.orders) return { outputs: splitOrders(records), changelog: [] };
      const changes = new StateChanges();
      const executions: Execution[] = [];
      const outputs: ProducedRecord[] = [];
      for (const record of records) {
        if (source.topic === TOPICS.prices) {
          const price = decodeMessage(PriceTick, record.value);
          if (price.ok) matcher.onPrice(state, price.value, changes, executions);
          else {
            metrics.rejected++;
            logger.warn({ ...source, offset: record.offset, reason: price.reason }, 'skipped an invalid price');
          }
        } else {
          // A component split in this transaction comes as it was made; one read from Kafka is decoded.
          const order = record.parsed === undefined ? decodeMessage(ComponentOrder, record.value) : { ok: true as const, value: record.parsed as ComponentOrder };
          if (order.ok) matcher.onOrder(state, order.value, changes, executions);
          else outputs.push(deadLetter(record, TOPICS.ordersDlq, order.reason, SERVICE_NAME));
        }
      }
      for (const execution of executions) outputs.push({ topic: TOPICS.executions, key: execution.symbol, value: JSON.stringify(execution) });
      return { outputs, changelog: matcher.changelogOf(state, changes) };
    },
  };
}
