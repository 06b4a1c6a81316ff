import { Point } from '@influxdata/influxdb-client';
import { TOPICS, type ConsumedRecord } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { encodeBatch, encodePrice } from './points.ts';

const priceRecord = (offset: string, value: object | string): ConsumedRecord => ({
  topic: TOPICS.prices,
  partition: 0,
  offset,
  key: null,
  value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
  headers: {},
  timestamp: '0',
});

const tick = { symbol: 'IVE', exchange: 'NASDAQ', bid: 93.97388, ask: 94.190756, timestamp: 1438539936.355217 };

describe('encodePrice', () => {
  it('writes bid_ask with symbol and exchange tags at the tick time plus the offset in the sub-millisecond digits', () => {
    expect(encodePrice(priceRecord('42', tick))).toEqual({
      ok: true,
      line: 'bid_ask,exchange=NASDAQ,symbol=IVE ask=94.190756,bid=93.97388 1438539936355000042',
    });
  });

  it('maps a replay of the same record to the same point and the next record to another', () => {
    const first = encodePrice(priceRecord('7', tick));
    expect(encodePrice(priceRecord('7', tick))).toEqual(first);
    expect(encodePrice(priceRecord('8', tick))).not.toEqual(first);
  });

  it('escapes spaces in tag values', () => {
    expect(encodePrice(priceRecord('1', { ...tick, exchange: 'NEW YORK' }))).toEqual({
      ok: true,
      line: 'bid_ask,exchange=NEW\\ YORK,symbol=IVE ask=94.190756,bid=93.97388 1438539936355000001',
    });
  });

  it('rejects records that are not valid prices, with the reason', () => {
    const good = priceRecord('1', tick);
    expect(encodeBatch([good, priceRecord('2', '{"symbol":"IVE"}')])).toEqual({
      lines: ['bid_ask,exchange=NASDAQ,symbol=IVE ask=94.190756,bid=93.97388 1438539936355000001'],
      records: [good],
      rejected: [{ offset: '2', reason: 'exchange: must be a string; bid: must be a number; ask: must be a number; timestamp: must be a number of epoch seconds' }],
    });
  });
});

describe('line protocol escaping (Point, as the encoders use it)', () => {
  it('escapes spaces, commas and equals signs in measurement, tag keys and tag values', () => {
    const line = new Point('my measurement,x').tag('tag key', 'a b,c=d').floatField('f', 1).timestamp('5').toLineProtocol();
    expect(line).toBe('my\\ measurement\\,x,tag\\ key=a\\ b\\,c\\=d f=1 5');
  });

  it('quotes string fields and escapes double quotes and backslashes in them', () => {
    const line = new Point('m').stringField('note', 'say "hi" \\ bye, a=b').timestamp('5').toLineProtocol();
    expect(line).toBe('m note="say \\"hi\\" \\\\ bye, a=b" 5');
  });

  it('escapes spaces, commas and equals signs in field keys', () => {
    const line = new Point('m').floatField('a b,c=d', 2.5).timestamp('5').toLineProtocol();
    expect(line).toBe('m a\\ b\\,c\\=d=2.5 5');
  });
});

describe('order flow measurements', () => {
  const ID = '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11';
  const record = (topic: string, partition: number, offset: string, value: object): ConsumedRecord => ({
    topic, partition, offset, key: null, value: Buffer.from(JSON.stringify(value)), headers: {}, timestamp: '0',
  });

  it('writes portfolio_orders with order_type, priority and partition tags, ids as fields', () => {
    const order = { taxpayer_id: 42, portfolio_order_id: ID, order_type: 'BUY', amount: 1000.5, portfolio: [['VTI', 0.6], ['IVE', 0.4]], priority: 2, timestamp: 1700000000.25 };
    const orderRecord = record(TOPICS.orders, 3, '9', order);
    expect(encodeBatch([orderRecord])).toEqual({
      records: [orderRecord],
      lines: [`portfolio_orders,kafka_partition=3,order_type=BUY,priority=2 amount=1000.5,components=2i,portfolio_order_id="${ID}",taxpayer_id=42i 1700000000250000009`],
      rejected: [],
    });
  });

  it('writes executions with symbol and order_type tags', () => {
    const execution = {
      taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, market_order_id: `mo:${ID}/IVE`, execution_id: `ex:${ID}/IVE`,
      order_type: 'SELL', symbol: 'IVE', requested_amount: 500, requested_shares: 5.320627, requested_price: 93.97388, timestamp: 1700000001,
    };
    expect(encodeBatch([record(TOPICS.executions, 0, '1', execution)]).lines).toEqual([
      `executions,kafka_partition=0,order_type=SELL,symbol=IVE allocations=1i,execution_id="ex:${ID}/IVE",market_order_id="mo:${ID}/IVE",net_side="SELL",requested_amount=500,requested_price=93.97388,requested_shares=5.320627 1700000001000000001`,
    ]);
  });

  it('writes fills with deltas and the order→fill latency in milliseconds', () => {
    const fill = {
      taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/IVE`, market_order_id: `mo:${ID}/IVE`, execution_id: `ex:${ID}/IVE`, fill_id: `ex:${ID}/IVE/${ID}/IVE`,
      symbol: 'IVE', order_type: 'BUY', filled_amount: 999.999991, filled_shares: 10.616753, filled_price: 94.190756,
      delta_shares_position: 10.616753, delta_cash_position: -999.999991, timestamp: 1700000002.0125, order_timestamp: 1700000002,
    };
    expect(encodeBatch([record(TOPICS.fills, 5, '1000001', fill)]).lines).toEqual([
      `fills,kafka_partition=5,order_type=BUY,symbol=IVE delta_cash_position=-999.999991,delta_shares_position=10.616753,execution_id="ex:${ID}/IVE",fill_id="ex:${ID}/IVE/${ID}/IVE",filled_amount=999.999991,filled_price=94.190756,filled_shares=10.616753,latency_ms=12.5,portfolio_order_id="${ID}",taxpayer_id=42i 1700000002012000001`,
    ]);
  });
});

describe('dead_letters', () => {
  it('writes one point per dead letter with the source topic, service and reason', () => {
    const record: ConsumedRecord = {
      topic: TOPICS.ticksDlq, partition: 2, offset: '7', key: null, value: Buffer.from('oops'), timestamp: '1700000000123',
      headers: { 'dlq.error': 'not JSON: bad', 'dlq.service': 'tick-deserializer', 'dlq.source.topic': 'ticks' },
    };
    expect(encodeBatch([record]).lines).toEqual([
      'dead_letters,dlq_topic=ticks.dlq,kafka_partition=2,service=tick-deserializer,source_topic=ticks count=1i,reason="not JSON: bad" 1700000000123000007',
    ]);
  });
});
