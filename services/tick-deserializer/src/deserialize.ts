/** Validation and normalization of raw ticks: pure, so it is tested and benchmarked without Kafka. */
import { deadLetter, describeIssues, RawTick, TOPICS, type ConsumedRecord, type PriceTick, type ProducedRecord } from '@tradeflow/shared';

export const SERVICE_NAME = 'tick-deserializer';

export type TickResult = { readonly ok: true; readonly price: PriceTick } | { readonly ok: false; readonly reason: string };

/** Parses one raw tick (the original feed's JSON) into a normalized price, or says why it cannot. */
export function parseTick(bytes: Buffer | null, maxBytes: number): TickResult {
  if (bytes === null || bytes.length === 0) return { ok: false, reason: 'empty message' };
  if (bytes.length > maxBytes) return { ok: false, reason: `oversized: ${bytes.length} bytes, the limit is ${maxBytes} (MAX_TICK_BYTES)` };
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    return { ok: false, reason: `not JSON: ${(error as Error).message}` };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, reason: 'not a JSON object with ask, bid, symbol, exchange and timestamp' };
  }
  const parsed = RawTick.safeParse(json);
  if (!parsed.success) return { ok: false, reason: describeIssues(parsed.error) };
  const tick = parsed.data;
  return {
    ok: true,
    price: {
      symbol: tick.symbol,
      exchange: tick.exchange,
      bid: tick.bid,
      ask: tick.ask,
      timestamp: Math.round(tick.timestamp * 1e6) / 1e6,
    },
  };
}

/** One batch of raw ticks → normalized prices keyed by symbol, and dead letters for the rest. */
export function deserializeTicks(records: readonly ConsumedRecord[], maxBytes: number): ProducedRecord[] {
  const out: ProducedRecord[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const result = parseTick(record.value, maxBytes);
    out[i] = result.ok
      ? { topic: TOPICS.prices, key: result.price.symbol, value: JSON.stringify(result.price) }
      : deadLetter(record, TOPICS.ticksDlq, result.reason, SERVICE_NAME);
  }
  return out;
}
