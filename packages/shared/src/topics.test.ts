import { describe, expect, it } from 'vitest';
import { coPartitioningProblems, DEFAULT_PARTITIONS, topicDefinitions, TOPICS } from './topics.ts';

describe('topicDefinitions', () => {
  it('defines every topic of the design once, positions compacted, default 6 partitions', () => {
    const defs = topicDefinitions();
    expect(defs.map((d) => d.name).sort()).toEqual(Object.values(TOPICS).sort());
    expect(DEFAULT_PARTITIONS).toBe(6);
    expect(defs.every((d) => d.partitions === 6)).toBe(true);
    expect(defs.filter((d) => d.cleanupPolicy === 'compact').map((d) => d.name)).toEqual(['positions', 'order-matcher.state']);
    expect(defs.filter((d) => d.coPartitionGroup === 'symbol').map((d) => d.name)).toEqual(['prices', 'orders.components', 'order-matcher.state']);
  });

  it('refuses a partition count that is not a positive integer', () => {
    expect(() => topicDefinitions(0)).toThrow('partition count must be a positive integer, got 0');
  });
});

describe('coPartitioningProblems', () => {
  it('accepts equal counts and reports a mismatch naming both topics', () => {
    const defs = topicDefinitions(6);
    expect(coPartitioningProblems(defs, new Map([['prices', 6], ['orders.components', 6], ['order-matcher.state', 6]]))).toEqual([]);
    expect(coPartitioningProblems(defs, new Map([['prices', 6], ['orders.components', 3], ['order-matcher.state', 6]]))).toEqual([
      'topics co-partitioned by symbol must have equal partition counts, found prices=6, orders.components=3, order-matcher.state=6; ' +
        'recreate the topics with one count (TOPIC_PARTITIONS) or add partitions to match',
    ]);
  });
});
