/**
 * Kafka records → InfluxDB line protocol, one encoder per topic. Pure, so tested without Kafka or
 * InfluxDB. Every record maps to its own point time (event time + offset, see uniquePointTime),
 * so thousands of points a second never overwrite each other and a replay overwrites itself.
 * Tags are only low-cardinality dimensions; ids are fields. Measurements whose series span
 * partitions (their topic is not keyed by a tag) also carry the partition as a tag, because the
 * offset alone is unique only within a partition.
 */
import { Point } from '@influxdata/influxdb-client';
import { decodeMessage, DLQ_HEADERS, Execution, Fill, PortfolioOrder, PriceTick, TOPICS, uniquePointTime, type ConsumedRecord } from '@tradeflow/shared';

export type Encoded = { readonly ok: true; readonly line: string } | { readonly ok: false; readonly reason: string };

type Encoder = (record: ConsumedRecord) => Encoded;

function finish(point: Point): Encoded {
  const line = point.toLineProtocol();
  return line === undefined ? { ok: false, reason: 'point has no fields' } : { ok: true, line };
}

/** bid_ask: tags symbol, exchange; fields bid, ask; at the tick's own time. */
export function encodePrice(record: ConsumedRecord): Encoded {
  const decoded = decodeMessage(PriceTick, record.value);
  if (!decoded.ok) return decoded;
  const tick = decoded.value;
  return finish(
    new Point('bid_ask')
      .tag('symbol', tick.symbol)
      .tag('exchange', tick.exchange)
      .floatField('bid', tick.bid)
      .floatField('ask', tick.ask)
      .timestamp(uniquePointTime(tick.timestamp, record.offset)),
  );
}

/** portfolio_orders: tags order_type, priority, kafka_partition; amount and ids as fields; at the order's time. */
export function encodeOrder(record: ConsumedRecord): Encoded {
  const decoded = decodeMessage(PortfolioOrder, record.value);
  if (!decoded.ok) return decoded;
  const order = decoded.value;
  return finish(
    new Point('portfolio_orders')
      .tag('order_type', order.order_type)
      .tag('priority', String(order.priority))
      .tag('kafka_partition', String(record.partition))
      .floatField('amount', order.amount)
      .intField('taxpayer_id', order.taxpayer_id)
      .intField('components', order.portfolio.length)
      .stringField('portfolio_order_id', order.portfolio_order_id)
      .timestamp(uniquePointTime(order.timestamp, record.offset)),
  );
}

/** executions: tags symbol, order_type, kafka_partition; the requested figures; at the execution's time. */
export function encodeExecution(record: ConsumedRecord): Encoded {
  const decoded = decodeMessage(Execution, record.value);
  if (!decoded.ok) return decoded;
  const execution = decoded.value;
  return finish(
    new Point('executions')
      .tag('symbol', execution.symbol)
      .tag('order_type', execution.order_type)
      .tag('kafka_partition', String(record.partition))
      .floatField('requested_amount', execution.requested_amount)
      .floatField('requested_shares', execution.requested_shares)
      .floatField('requested_price', execution.requested_price)
      .intField('allocations', execution.allocations?.length ?? 1)
      .stringField('net_side', execution.net_side ?? execution.order_type)
      .stringField('execution_id', execution.execution_id ?? execution.market_order_id)
      .stringField('market_order_id', execution.market_order_id)
      .timestamp(uniquePointTime(execution.timestamp, record.offset)),
  );
}

/** fills: tags symbol, order_type, kafka_partition; amounts, shares, price, deltas, order→fill latency; at the fill's time. */
export function encodeFill(record: ConsumedRecord): Encoded {
  const decoded = decodeMessage(Fill, record.value);
  if (!decoded.ok) return decoded;
  const fill = decoded.value;
  const point = new Point('fills')
    .tag('symbol', fill.symbol)
    .tag('order_type', fill.order_type)
    .tag('kafka_partition', String(record.partition))
    .floatField('filled_amount', fill.filled_amount)
    .floatField('filled_shares', fill.filled_shares)
    .floatField('filled_price', fill.filled_price)
    .floatField('delta_shares_position', fill.delta_shares_position)
    .floatField('delta_cash_position', fill.delta_cash_position)
    .intField('taxpayer_id', fill.taxpayer_id)
    .stringField('fill_id', fill.fill_id)
    .stringField('execution_id', fill.execution_id)
    .stringField('portfolio_order_id', fill.portfolio_order_id);
  if (fill.order_timestamp !== undefined) point.floatField('latency_ms', Math.round((fill.timestamp - fill.order_timestamp) * 1e6) / 1e3);
  return finish(point.timestamp(uniquePointTime(fill.timestamp, record.offset)));
}

/** dead_letters: one point per dead-lettered message, from the DLQ headers; tags source topic and service. */
export function encodeDeadLetter(record: ConsumedRecord): Encoded {
  const header = (name: string) => {
    const value = record.headers[name];
    return value === undefined ? undefined : Array.isArray(value) ? String(value[0]) : value.toString();
  };
  const failedAtMs = Number(record.timestamp);
  return finish(
    new Point('dead_letters')
      .tag('dlq_topic', record.topic)
      .tag('kafka_partition', String(record.partition))
      .tag('source_topic', header(DLQ_HEADERS.sourceTopic) ?? 'unknown')
      .tag('service', header(DLQ_HEADERS.service) ?? 'unknown')
      .intField('count', 1)
      .stringField('reason', header(DLQ_HEADERS.error) ?? '')
      .timestamp(uniquePointTime(Number.isFinite(failedAtMs) ? failedAtMs / 1000 : 0, record.offset)),
  );
}

export const ENCODERS: Readonly<Record<string, Encoder>> = {
  [TOPICS.prices]: encodePrice,
  [TOPICS.orders]: encodeOrder,
  [TOPICS.executions]: encodeExecution,
  [TOPICS.fills]: encodeFill,
  [TOPICS.ticksDlq]: encodeDeadLetter,
  [TOPICS.ordersDlq]: encodeDeadLetter,
  [TOPICS.executionsDlq]: encodeDeadLetter,
};

export interface EncodedBatch {
  readonly lines: string[];
  /** The record of each line (same index). */
  readonly records: ConsumedRecord[];
  readonly rejected: { readonly offset: string; readonly reason: string }[];
}

export function encodeBatch(records: readonly ConsumedRecord[]): EncodedBatch {
  const lines: string[] = [];
  const sources: ConsumedRecord[] = [];
  const rejected: { offset: string; reason: string }[] = [];
  for (const record of records) {
    const encoder = ENCODERS[record.topic];
    const result: Encoded = encoder === undefined ? { ok: false, reason: `no encoder for topic ${record.topic}` } : encoder(record);
    if (result.ok) {
      lines.push(result.line);
      sources.push(record);
    } else rejected.push({ offset: record.offset, reason: result.reason });
  }
  return { lines, records: sources, rejected };
}
