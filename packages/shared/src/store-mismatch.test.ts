import { describe, expect, it } from 'vitest';
import { storeMismatch } from './kafka.ts';

describe('storeMismatch', () => {
  const now = { clusterId: 'B', ends: new Map([['positions:0', 100n], ['fills:0', 7n]]) };

  it('accepts a store of this cluster within every partition, or one that recorded no cluster yet', () => {
    expect(storeMismatch({ clusterId: 'B', offsets: [['positions', 0, 100n], ['fills', 0, 3n]] }, now)).toBeUndefined();
    expect(storeMismatch({ clusterId: undefined, offsets: [] }, now)).toBeUndefined();
    // A partition Kafka does not list (fewer partitions now) is not this check's business.
    expect(storeMismatch({ clusterId: 'B', offsets: [['positions', 5, 1_000n]] }, now)).toBeUndefined();
  });

  it('names another cluster', () => {
    expect(storeMismatch({ clusterId: 'A', offsets: [] }, now)).toBe('it was kept for Kafka cluster A, and this is cluster B');
  });

  it('names an offset past its partition end (the topic was created again)', () => {
    expect(storeMismatch({ clusterId: undefined, offsets: [['fills', 0, 8n]] }, now)).toBe("it is as of offset 8 of fills-0, past that partition's end (7): the topic was created again");
  });
});
