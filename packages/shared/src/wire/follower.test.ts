import { describe, expect, it } from 'vitest';
import { fetchSizes, MIN_FETCH_BYTES } from './follower.ts';

const settings = { maxWaitMs: 200, partitionMaxBytes: 2 * 1024 * 1024, maxBytes: 16 * 1024 * 1024 };

describe('fetchSizes (a fetch sized to its receiver’s room)', () => {
  it('asks for the room in records at their size so far', () => {
    expect(fetchSizes(1_000, 300, settings)).toEqual({ maxWaitMs: 200, maxBytes: 300_000, partitionMaxBytes: 300_000 });
  });

  it('asks for no less than MIN_FETCH_BYTES, even with no room or tiny records', () => {
    expect(fetchSizes(0, 300, settings)).toEqual({ maxWaitMs: 200, maxBytes: MIN_FETCH_BYTES, partitionMaxBytes: MIN_FETCH_BYTES });
    expect(fetchSizes(-50, 300, settings).maxBytes).toBe(MIN_FETCH_BYTES);
    expect(fetchSizes(10, 0, settings).maxBytes).toBe(MIN_FETCH_BYTES);
  });

  it('asks for no more than the settings allow, a partition no more than its own limit', () => {
    expect(fetchSizes(1_000_000, 1_000, settings)).toEqual({ maxWaitMs: 200, maxBytes: 16 * 1024 * 1024, partitionMaxBytes: 2 * 1024 * 1024 });
    expect(fetchSizes(5_000, 1_000, settings)).toEqual({ maxWaitMs: 200, maxBytes: 5_000_000, partitionMaxBytes: 2 * 1024 * 1024 });
  });

  it('keeps settings smaller than MIN_FETCH_BYTES as they are', () => {
    const small = { maxWaitMs: 50, partitionMaxBytes: 1_024, maxBytes: 2_048 };
    expect(fetchSizes(10, 100, small)).toEqual({ maxWaitMs: 50, maxBytes: 2_048, partitionMaxBytes: 1_024 });
  });
});
