import { DLQ_HEADERS, TOPICS, type ConsumedRecord } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { deserializeTicks, parseTick } from './deserialize.ts';

const ORIGINAL = '{"ask": 94.190756, "timestamp": 1438539936.355217, "symbol": "IVE", "bid": 93.97388, "exchange": "NASDAQ"}';
const bytes = (s: string) => Buffer.from(s);

describe('parseTick', () => {
  it("normalizes the original feed's exact tick", () => {
    expect(parseTick(bytes(ORIGINAL), 4096)).toEqual({
      ok: true,
      price: { symbol: 'IVE', exchange: 'NASDAQ', bid: 93.97388, ask: 94.190756, timestamp: 1438539936.355217 },
    });
  });

  it('upper-cases and trims symbol and exchange, rounds the timestamp to microseconds', () => {
    const result = parseTick(bytes('{"ask": 10, "timestamp": 1438539936.1234567, "symbol": " ive ", "bid": 9, "exchange": "nyse"}'), 4096);
    expect(result).toEqual({ ok: true, price: { symbol: 'IVE', exchange: 'NYSE', bid: 9, ask: 10, timestamp: 1438539936.123457 } });
  });

  it.each([
    ['empty', '', 'empty message'],
    ['not JSON', 'hello', 'not JSON: Unexpected token \'h\', "hello" is not valid JSON'],
    ['NaN literal', '{"ask": NaN, "timestamp": 1438539936, "symbol": "IVE", "bid": 1, "exchange": "X"}', 'not JSON: Unexpected token \'N\', "{"ask": NaN, "time"... is not valid JSON'],
    ['a JSON array', '[1,2]', 'not a JSON object with ask, bid, symbol, exchange and timestamp'],
    ['JSON null', 'null', 'not a JSON object with ask, bid, symbol, exchange and timestamp'],
    ['missing bid', '{"ask": 94.19, "timestamp": 1438539936.3, "symbol": "IVE", "exchange": "NASDAQ"}', 'bid: must be a number'],
    ['a string price', '{"ask": "94.19", "timestamp": 1438539936.3, "symbol": "IVE", "bid": 93.9, "exchange": "NASDAQ"}', 'ask: must be a number'],
    ['a negative price', '{"ask": 94.19, "timestamp": 1438539936.3, "symbol": "IVE", "bid": -93.9, "exchange": "NASDAQ"}', 'bid: must be a positive price'],
    ['a crossed quote', '{"ask": 93.0, "timestamp": 1438539936.3, "symbol": "IVE", "bid": 93.9, "exchange": "NASDAQ"}', 'bid: bid must not exceed ask (crossed quote)'],
    ['a millisecond timestamp', '{"ask": 94.19, "timestamp": 1438539936300, "symbol": "IVE", "bid": 93.9, "exchange": "NASDAQ"}', 'timestamp: must be epoch seconds before 2100-01-01 (milliseconds instead of seconds?)'],
    ['a numeric symbol', '{"ask": 94.19, "timestamp": 1438539936.3, "symbol": 7, "bid": 93.9, "exchange": "NASDAQ"}', 'symbol: must be a string'],
  ])('rejects %s with a reason', (_name, input, reason) => {
    expect(parseTick(bytes(input), 4096)).toEqual({ ok: false, reason });
  });

  it('rejects oversized messages before parsing them', () => {
    const big = JSON.stringify({ ...JSON.parse(ORIGINAL), padding: 'x'.repeat(5000) });
    expect(parseTick(bytes(big), 4096)).toEqual({ ok: false, reason: `oversized: ${big.length} bytes, the limit is 4096 (MAX_TICK_BYTES)` });
  });
});

describe('deserializeTicks', () => {
  const record = (offset: string, value: string): ConsumedRecord => ({
    topic: TOPICS.ticks,
    partition: 3,
    offset,
    key: Buffer.from('IVE'),
    value: Buffer.from(value),
    headers: { trace: 'abc' },
    timestamp: '1700000000000',
  });

  it('publishes valid ticks keyed by symbol and dead-letters the rest with original bytes and reason', () => {
    const out = deserializeTicks([record('10', ORIGINAL), record('11', '{oops')], 4096);
    expect(out).toHaveLength(2);
    expect(out[0]).toEqual({
      topic: TOPICS.prices,
      key: 'IVE',
      value: '{"symbol":"IVE","exchange":"NASDAQ","bid":93.97388,"ask":94.190756,"timestamp":1438539936.355217}',
    });
    expect(out[1]).toEqual({
      topic: TOPICS.ticksDlq,
      key: Buffer.from('IVE'),
      value: Buffer.from('{oops'),
      headers: {
        trace: 'abc',
        [DLQ_HEADERS.error]: 'not JSON: Expected property name or \'}\' in JSON at position 1 (line 1 column 2)',
        [DLQ_HEADERS.service]: 'tick-deserializer',
        [DLQ_HEADERS.sourceTopic]: 'ticks',
        [DLQ_HEADERS.sourcePartition]: '3',
        [DLQ_HEADERS.sourceOffset]: '11',
        [DLQ_HEADERS.sourceTimestamp]: '1700000000000',
      },
    });
  });
});
