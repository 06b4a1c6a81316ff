import { describe, expect, it } from 'vitest';
import { uniquePointTime } from './influx.ts';

describe('uniquePointTime', () => {
  it('keeps the event time to the millisecond and puts the offset modulo 10^6 below it', () => {
    expect(uniquePointTime(1438539936.355217, '0')).toBe('1438539936355000000');
    expect(uniquePointTime(1438539936.355217, '123')).toBe('1438539936355000123');
    expect(uniquePointTime(1438539936.355217, '1000123')).toBe('1438539936355000123');
  });

  it('is stable under float noise in the seconds', () => {
    expect(uniquePointTime(1438539936.999, '1')).toBe('1438539936999000001');
    expect(uniquePointTime(0.1 + 0.2 + 1438539936, '1')).toBe('1438539936300000001');
  });
});
