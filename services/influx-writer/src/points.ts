/**
 * Kafka records → InfluxDB line protocol, one encoder per topic. Pure, so tested without Kafka or
 * InfluxDB. Every record maps to its own point time (event time + offset, see uniquePointTime),
 * so thousands of points a second never overwrite each other and a replay overwrites itself.
 * Tags are only low-cardinality dimensions; ids are fields.
 */
import { Point } from '@influxdata/influxdb-client';
import { describeIssues, PriceTick, TOPICS, uniquePointTime, type ConsumedRecord } from '@tradeflow/shared';
import type { z } from 'zod';

export type Encoded = { readonly ok: true; readonly line: string } | { readonly ok: false; readonly reason: string };

type Encoder = (record: ConsumedRecord) => Encoded;

function decode<T extends z.ZodType>(schema: T, record: ConsumedRecord): { ok: true; value: z.infer<T> } | { ok: false; reason: string } {
  if (record.value === null) return { ok: false, reason: 'empty message' };
  let json: unknown;
  try {
    json = JSON.parse(record.value.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: describeIssues(parsed.error) };
}

function finish(point: Point): Encoded {
  const line = point.toLineProtocol();
  return line === undefined ? { ok: false, reason: 'point has no fields' } : { ok: true, line };
}

/** bid_ask: tags symbol, exchange; fields bid, ask; at the tick's own time. */
export function encodePrice(record: ConsumedRecord): Encoded {
  const decoded = decode(PriceTick, record);
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

export const ENCODERS: Readonly<Record<string, Encoder>> = {
  [TOPICS.prices]: encodePrice,
};

export interface EncodedBatch {
  readonly lines: string[];
  readonly rejected: { readonly offset: string; readonly reason: string }[];
}

export function encodeBatch(records: readonly ConsumedRecord[]): EncodedBatch {
  const lines: string[] = [];
  const rejected: { offset: string; reason: string }[] = [];
  for (const record of records) {
    const encoder = ENCODERS[record.topic];
    const result: Encoded = encoder === undefined ? { ok: false, reason: `no encoder for topic ${record.topic}` } : encoder(record);
    if (result.ok) lines.push(result.line);
    else rejected.push({ offset: record.offset, reason: result.reason });
  }
  return { lines, rejected };
}
