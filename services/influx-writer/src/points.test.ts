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
    expect(encodeBatch([priceRecord('1', tick), priceRecord('2', '{"symbol":"IVE"}')])).toEqual({
      lines: ['bid_ask,exchange=NASDAQ,symbol=IVE ask=94.190756,bid=93.97388 1438539936355000001'],
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
