import { describe, expect, it } from 'vitest';
import { floorDiv, fromMicros, roundDiv, sharesFor, splitByWeights, toMicros, valueOf } from './money.ts';

describe('money', () => {
  it('converts six-decimal numbers to micro-units and back exactly', () => {
    expect(toMicros(94.190756)).toBe(94_190_756n);
    expect(toMicros(-0.000001)).toBe(-1n);
    expect(fromMicros(94_190_756n)).toBe(94.190756);
    expect(fromMicros(toMicros(1234567.891011))).toBe(1234567.891011);
  });

  it('divides with floor and half-away-from-zero rounding', () => {
    expect(floorDiv(7n, 2n)).toBe(3n);
    expect(floorDiv(-7n, 2n)).toBe(-4n);
    expect(roundDiv(5n, 2n)).toBe(3n);
    expect(roundDiv(-5n, 2n)).toBe(-3n);
    expect(roundDiv(4n, 3n)).toBe(1n);
  });

  it('rounds shares down to six decimals and values them to the nearest micro-dollar', () => {
    expect(fromMicros(sharesFor(toMicros(1000), toMicros(94.190756)))).toBe(10.616753);
    expect(fromMicros(valueOf(toMicros(10.616753), toMicros(94.190756)))).toBe(999.999991);
  });

  it('splits by weights so that the parts sum exactly to the total', () => {
    expect(splitByWeights(toMicros(1000), [0.6, 0.4]).map(fromMicros)).toEqual([600, 400]);
    expect(splitByWeights(toMicros(0.01), [0.333333, 0.333333, 0.333334]).map(fromMicros)).toEqual([0.003333, 0.003333, 0.003334]);
    const thirds = splitByWeights(toMicros(1000), [0.3333333333, 0.3333333333, 0.3333333333]);
    expect(thirds.map(fromMicros)).toEqual([333.333334, 333.333333, 333.333333]);
    expect(thirds.reduce((a, b) => a + b, 0n)).toBe(toMicros(1000));
  });
});
