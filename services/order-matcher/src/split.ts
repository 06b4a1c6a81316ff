/** Rule 1: a portfolio order becomes one component order per symbol, amount × weight, exactly. */
import {
  deadLetter,
  decodeMessage,
  fromMicros,
  PortfolioOrder,
  splitByWeights,
  toMicros,
  TOPICS,
  type ComponentOrder,
  type ConsumedRecord,
  type ProducedRecord,
} from '@tradeflow/shared';

export const SERVICE_NAME = 'order-matcher';

/**
 * Component amounts are the order's amount split by weight in micro-dollars, so they sum exactly
 * to the amount. A component whose share rounds to nothing is left out.
 */
export function splitPortfolioOrder(order: PortfolioOrder): ComponentOrder[] {
  const parts = splitByWeights(toMicros(order.amount), order.portfolio.map((c) => c.weight));
  const components: ComponentOrder[] = [];
  order.portfolio.forEach((component, i) => {
    const micros = parts[i]!;
    if (micros <= 0n) return;
    components.push({
      taxpayer_id: order.taxpayer_id,
      portfolio_order_id: order.portfolio_order_id,
      component_order_id: `${order.portfolio_order_id}/${component.symbol}`,
      order_type: order.order_type,
      symbol: component.symbol,
      amount: fromMicros(micros),
      priority: order.priority,
      timestamp: order.timestamp,
    });
  });
  return components;
}

/** A batch of `orders` → component orders keyed by symbol, and dead letters for invalid orders. */
export function splitOrders(records: readonly ConsumedRecord[]): ProducedRecord[] {
  const out: ProducedRecord[] = [];
  for (const record of records) {
    const parsed = decodeMessage(PortfolioOrder, record.value);
    if (!parsed.ok) {
      out.push(deadLetter(record, TOPICS.ordersDlq, parsed.reason, SERVICE_NAME));
      continue;
    }
    for (const component of splitPortfolioOrder(parsed.value)) {
      // `parsed`: matched in the same transaction without decoding it again (applyOwnOutputs).
      out.push({ topic: TOPICS.orderComponents, key: component.symbol, value: JSON.stringify(component), parsed: component });
    }
  }
  return out;
}
