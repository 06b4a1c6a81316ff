/**
 * Looks into the broker without Kafka UI (which runs only under docker compose):
 *   node scripts/topics.ts [list]                topics (partitions, offsets in use, end offsets,
 *                                                cleanup policy) and consumer groups with their lag
 *                                                (offsets count transaction markers too)
 *   node scripts/topics.ts tail TOPIC [--last N] [--follow] [--partition P] [--raw]
 *                                                the last N records of each partition (10), decoded:
 *                                                partition, offset, time, key, headers (a dead
 *                                                letter's reason first), the JSON value
 * Reads committed records only, from KAFKA_BROKERS (127.0.0.1:9092); commits nothing.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createKafka, createLogger, describeGroups, describeTopics, DLQ_HEADERS, kafkaEnv, parseEnv, type Kafka } from '@tradeflow/shared';

const USAGE = 'usage: node scripts/topics.ts [list] | tail TOPIC [--last N] [--follow] [--partition P] [--raw]';
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    last: { type: 'string', default: '10' },
    follow: { type: 'boolean', default: false },
    partition: { type: 'string' },
    raw: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const fail = (message: string): never => {
  process.stderr.write(`topics: ${message}\n${USAGE}\n`);
  process.exit(2);
};
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const [command = 'list', topicArg] = positionals;
const env = parseEnv(kafkaEnv);
const kafka = createKafka(env, 'topics', createLogger('topics', process.env['LOG_LEVEL'] ?? 'error'));
const n = (x: bigint | number) => x.toLocaleString('en-US');

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

async function list(): Promise<void> {
  const [topics, groups] = await Promise.all([describeTopics(kafka), describeGroups(kafka)]);
  process.stdout.write(`Kafka ${env.KAFKA_BROKERS.join(',')}\n\ntopics\n`);
  process.stdout.write(
    `${table([
      ['topic', 'partitions', 'offsets', 'cleanup', 'end offset per partition'],
      ...topics.map((t) => [
        t.name,
        String(t.partitions.length),
        n(t.partitions.reduce((sum, p) => sum + (p.high - p.low), 0n)),
        t.cleanupPolicy,
        t.partitions.map((p) => `${p.partition}:${n(p.high)}`).join(' '),
      ]),
    ])}\n\nconsumer groups\n`,
  );
  const rows: string[][] = [['group', 'state', 'members', 'topic', 'lag', 'lag per partition']];
  for (const g of groups) {
    if (g.topics.length === 0) rows.push([g.groupId, g.state, String(g.members), '-', '-', '(no committed offsets)']);
    for (const t of g.topics) {
      rows.push([g.groupId, g.state, String(g.members), t.topic, n(t.partitions.reduce((sum, p) => sum + p.lag, 0n)), t.partitions.map((p) => `${p.partition}:${n(p.lag)}`).join(' ')]);
    }
  }
  process.stdout.write(`${rows.length === 1 ? '(none)' : table(rows)}\n`);
}

/** A record as a few readable lines: where it is, its key and headers, its value as JSON. */
export function formatRecord(r: { partition: number; offset: string; timestamp: string; key: Buffer | null; headers: Record<string, Buffer | string | readonly (Buffer | string)[] | undefined>; value: Buffer | null }, raw: boolean): string {
  const time = new Date(Number(r.timestamp)).toISOString();
  const lines = [`${'─'.repeat(8)} partition ${r.partition}  offset ${r.offset}  ${time}  key ${r.key === null ? '(none)' : JSON.stringify(r.key.toString())}`];
  const headers = Object.entries(r.headers).map(([k, v]) => [k, v === undefined ? '' : Array.isArray(v) ? v.map(String).join(', ') : v.toString()] as const);
  const reason = headers.find(([k]) => k === DLQ_HEADERS.error);
  if (reason !== undefined) lines.push(`  DEAD LETTER from ${headers.find(([k]) => k === DLQ_HEADERS.sourceTopic)?.[1] ?? '?'}: ${reason[1]}`);
  for (const [k, v] of headers) if (k !== DLQ_HEADERS.error) lines.push(`  ${k}: ${v}`);
  const text = r.value === null ? '(tombstone)' : r.value.toString();
  let shown = text;
  if (!raw && r.value !== null) {
    try {
      shown = JSON.stringify(JSON.parse(text));
    } catch {
      shown = `${text}   (not JSON)`;
    }
  }
  lines.push(`  ${shown}`);
  return lines.join('\n');
}

async function tail(kafkaClient: Kafka, topic: string): Promise<void> {
  const last = Number(values.last);
  if (!Number.isInteger(last) || last < 0) fail(`--last must be a whole number, got ${values.last}`);
  const only = values.partition === undefined ? undefined : Number(values.partition);
  const topics = await describeTopics(kafkaClient);
  const found = topics.find((t) => t.name === topic);
  if (found === undefined) fail(`no topic ${topic}; there are: ${topics.map((t) => t.name).join(', ')}`);
  const partitions = found!.partitions.filter((p) => only === undefined || p.partition === only);
  if (partitions.length === 0) fail(`${topic} has no partition ${only}`);
  // Offsets count transaction markers too (one per partition per transaction), which are never
  // delivered: read twice as far back, keep the last N records of each partition.
  const back = BigInt(2 * last + 2);
  const starts = new Map(partitions.map((p) => [p.partition, p.high - back > p.low ? p.high - back : p.low]));
  const ends = new Map(partitions.map((p) => [p.partition, p.high]));
  const held = new Map<number, string[]>(partitions.map((p) => [p.partition, []]));
  const pending = new Set(partitions.filter((p) => p.high > starts.get(p.partition)!).map((p) => p.partition));
  const flush = (partition: number) => {
    const lines = held.get(partition);
    if (lines === undefined) return;
    held.delete(partition);
    for (const line of lines.slice(-last)) process.stdout.write(`${line}\n`);
  };
  const consumer = kafkaClient.consumer({ groupId: `topics-tail-${randomUUID()}`, maxWaitTimeInMs: 250 });
  let lastSeen = Date.now();
  // Every batch ends here, an empty one too (only transaction markers): its last offset counts.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const end = ends.get(payload.partition);
    if (end !== undefined && pending.has(payload.partition) && BigInt(payload.lastOffset) + 1n >= end) {
      pending.delete(payload.partition);
      flush(payload.partition);
    }
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      if (!starts.has(batch.partition)) return;
      for (const m of batch.messages) {
        const line = formatRecord({ partition: batch.partition, offset: m.offset, timestamp: m.timestamp, key: m.key, headers: m.headers ?? {}, value: m.value }, values.raw);
        const lines = held.get(batch.partition);
        if (lines === undefined) process.stdout.write(`${line}\n`);
        else lines.push(line);
        lastSeen = Date.now();
      }
    },
  });
  for (const [partition, offset] of starts) consumer.seek({ topic, partition, offset: offset.toString() });
  // Until every partition reached the end it had when this started, or nothing came for a while
  // (the end may be a transaction marker); with --follow, then on as records arrive.
  while (pending.size > 0 && Date.now() - lastSeen < 5_000) await new Promise((resolve) => setTimeout(resolve, 200));
  for (const partition of [...held.keys()]) flush(partition);
  while (values.follow) await new Promise((resolve) => setTimeout(resolve, 1_000));
  await consumer.disconnect();
}

try {
  if (command === 'list') await list();
  else if (command === 'tail') await tail(kafka, topicArg ?? fail('tail needs a topic'));
  else fail(`unknown command ${command}`);
} catch (error) {
  process.stderr.write(`topics: ${(error as Error).message} (is the broker at ${env.KAFKA_BROKERS.join(',')} running? KAFKA_BROKERS says where)\n`);
  process.exit(1);
}
process.exit(0);
