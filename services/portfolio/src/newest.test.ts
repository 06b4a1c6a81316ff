import { describe, expect, it } from 'vitest';
import { newestPerKey, type KeyedRecord } from './newest.ts';

const record = (key: string | null, value: string | null): KeyedRecord & { name: string } => ({
  key: key === null ? null : Buffer.from(key),
  value: value === null ? null : Buffer.from(value),
  name: `${key}:${value}`,
});

describe('newestPerKey', () => {
  it('takes only the last record of each key, newest first', () => {
    const records = [record('1', 'a'), record('2', 'b'), record('1', 'c'), record('3', 'd'), record('2', 'e')];
    const taken: string[] = [];
    const visited = newestPerKey(records, (r) => {
      taken.push(r.name);
      return true;
    });
    expect(taken).toEqual(['2:e', '3:d', '1:c']);
    expect(visited).toBe(3);
  });

  it('goes on to the older records of a key while the newer ones are not taken (unreadable)', () => {
    const records = [record('1', 'old'), record('1', 'mid'), record('1', 'bad'), record('2', 'bad')];
    const taken: string[] = [];
    const visited = newestPerKey(records, (r) => {
      if (r.value!.toString() === 'bad') return false;
      taken.push(r.name);
      return true;
    });
    expect(taken).toEqual(['1:mid']);
    expect(visited).toBe(3);
  });

  it('visits every record without a key', () => {
    const records = [record(null, 'a'), record(null, 'b'), record('7', 'c'), record('7', 'd')];
    const taken: string[] = [];
    newestPerKey(records, (r) => {
      taken.push(r.name);
      return true;
    });
    expect(taken).toEqual(['7:d', 'null:b', 'null:a']);
  });
});
