/**
 * Every Kafka topic of the system, defined once. Services, topic initialisation, tests and the
 * docker-compose checks import these definitions instead of spelling topic names themselves.
 */

export const TOPICS = {
  ticks: 'ticks',
  prices: 'prices',
  ticksDlq: 'ticks.dlq',
  orders: 'orders',
  ordersDlq: 'orders.dlq',
  orderComponents: 'orders.components',
  executions: 'executions',
  executionsDlq: 'executions.dlq',
  fills: 'fills',
  positions: 'positions',
  matcherState: 'order-matcher.state',
  influxDlq: 'influx.dlq',
} as const;

export type TopicName = (typeof TOPICS)[keyof typeof TOPICS];

export const DEFAULT_PARTITIONS = 6;

export interface TopicDefinition {
  readonly name: TopicName;
  /** What the message key holds; every message about one key lands in one partition. */
  readonly key: string;
  readonly partitions: number;
  readonly cleanupPolicy: 'delete' | 'compact';
  /**
   * Topics in the same group are joined by key inside one consumer, so they must have the same
   * partition count (Storm's fields grouping on symbol becomes key partitioning).
   */
  readonly coPartitionGroup?: string;
  readonly description: string;
}

/** The topic table of the design, with the configured partition count. */
export function topicDefinitions(partitions: number = DEFAULT_PARTITIONS): readonly TopicDefinition[] {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new Error(`partition count must be a positive integer, got ${partitions}`);
  }
  return [
    { name: TOPICS.ticks, key: 'symbol', partitions, cleanupPolicy: 'delete', description: 'raw tick JSON as sent by a feed' },
    { name: TOPICS.prices, key: 'symbol', partitions, cleanupPolicy: 'delete', coPartitionGroup: 'symbol', description: 'validated, normalized ticks' },
    { name: TOPICS.ticksDlq, key: 'original key', partitions, cleanupPolicy: 'delete', description: 'ticks that failed validation, original bytes, reason in headers' },
    { name: TOPICS.orders, key: 'portfolio_order_id', partitions, cleanupPolicy: 'delete', description: 'portfolio orders' },
    { name: TOPICS.ordersDlq, key: 'original key', partitions, cleanupPolicy: 'delete', description: 'orders that failed validation, original bytes, reason in headers' },
    { name: TOPICS.orderComponents, key: 'symbol', partitions, cleanupPolicy: 'delete', coPartitionGroup: 'symbol', description: 'one component order per symbol of a portfolio order' },
    { name: TOPICS.executions, key: 'symbol', partitions, cleanupPolicy: 'delete', description: 'market orders ready to execute, with allocations' },
    { name: TOPICS.executionsDlq, key: 'original key', partitions, cleanupPolicy: 'delete', description: 'executions that failed validation, original bytes, reason in headers' },
    { name: TOPICS.fills, key: 'taxpayer_id', partitions, cleanupPolicy: 'delete', description: 'one fill per allocation' },
    { name: TOPICS.positions, key: 'taxpayer_id', partitions, cleanupPolicy: 'compact', description: 'account snapshots: shares per symbol and cash; also fill-publisher\'s changelog' },
    { name: TOPICS.influxDlq, key: 'original key', partitions, cleanupPolicy: 'delete', description: 'records whose points InfluxDB refused for good (a field type conflict, a malformed point), original bytes, its reason in headers' },
    { name: TOPICS.matcherState, key: 'state entry', partitions, cleanupPolicy: 'compact', coPartitionGroup: 'symbol', description: 'order-matcher\'s changelog: latest prices and pending component orders per partition' },
  ];
}

/**
 * Checks that topics sharing a co-partition group have equal partition counts.
 * `actual` maps topic name to its partition count as it exists on the broker (or as configured).
 * Returns one message per violated group; empty when everything agrees.
 */
export function coPartitioningProblems(
  definitions: readonly TopicDefinition[],
  actual: ReadonlyMap<string, number>,
): string[] {
  const groups = new Map<string, string[]>();
  for (const def of definitions) {
    if (def.coPartitionGroup === undefined) continue;
    groups.set(def.coPartitionGroup, [...(groups.get(def.coPartitionGroup) ?? []), def.name]);
  }
  const problems: string[] = [];
  for (const [group, names] of groups) {
    const counts = names.map((name) => `${name}=${actual.get(name) ?? 'missing'}`);
    const distinct = new Set(names.map((name) => actual.get(name)));
    if (distinct.size > 1) {
      problems.push(
        `topics co-partitioned by ${group} must have equal partition counts, found ${counts.join(', ')}; ` +
          'recreate the topics with one count (TOPIC_PARTITIONS) or add partitions to match',
      );
    }
  }
  return problems;
}
