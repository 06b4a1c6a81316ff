/**
 * Reads a topic's log files from a broker's log directory (a stopped or running broker; with Kafka's
 * own DumpLogSegments) and reports every record that a read_committed consumer sees more than once,
 * by the value of one JSON field, with the batch each copy came in: producer id and epoch, base
 * sequence, and the transaction marker that committed it. This is how a duplicate is traced to the
 * client path that wrote it (a batch sent twice in one transaction, an input processed by two
 * transactions, ...).
 *
 *   node scripts/diagnose-txn-log.ts --log-dir <dir>/node-1/kraft-logs --topic fills [--field component_order_id]
 *
 * With several replicas, give one broker's log directory: a replica holds the leader's records.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    'log-dir': { type: 'string' },
    topic: { type: 'string', default: 'fills' },
    field: { type: 'string' },
    'kafka-libs': { type: 'string', default: join(homedir(), '.cache', 'tradeflow', 'kafka-4.1.2', 'libs') },
    limit: { type: 'string', default: '10' },
  },
});
const logDir = values['log-dir'];
if (logDir === undefined) throw new Error('--log-dir is required (a broker log directory, e.g. <data dir>/node-1/kraft-logs)');
const topic = values.topic!;
const field = values.field ?? (topic === 'executions' ? 'execution_id' : topic === 'orders' ? 'order_id' : 'component_order_id');

interface Batch {
  readonly partition: number;
  readonly baseOffset: number;
  readonly lastOffset: number;
  readonly producerId: string;
  readonly producerEpoch: number;
  readonly baseSequence: number;
  readonly transactional: boolean;
  marker?: { offset: number; type: string };
}

interface Copy {
  readonly offset: number;
  readonly batch: Batch;
  readonly value: string;
}

const batchLine = /^baseOffset: (\d+) lastOffset: (\d+) count: \d+ baseSequence: (-?\d+) lastSequence: -?\d+ producerId: (-?\d+) producerEpoch: (-?\d+) partitionLeaderEpoch: -?\d+ isTransactional: (true|false) isControl: (true|false)/;
const recordLine = /^\| offset: (\d+) .*?(?:endTxnMarker: (\w+).*|payload: (.*))$/;

/** Parses DumpLogSegments output of one partition into its records, each with its batch; markers close the producer's open batches. */
function parseDump(partition: number, text: string): Copy[] {
  const copies: Copy[] = [];
  const open = new Map<string, Batch[]>();
  let batch: Batch | undefined;
  let control = false;
  for (const line of text.split('\n')) {
    const b = batchLine.exec(line);
    if (b !== null) {
      batch = { partition, baseOffset: Number(b[1]), lastOffset: Number(b[2]), baseSequence: Number(b[3]), producerId: b[4]!, producerEpoch: Number(b[5]), transactional: b[6] === 'true' };
      control = b[7] === 'true';
      if (batch.transactional && !control) open.set(batch.producerId, [...(open.get(batch.producerId) ?? []), batch]);
      continue;
    }
    const r = recordLine.exec(line);
    if (r === null || batch === undefined) continue;
    if (control) {
      for (const pending of open.get(batch.producerId) ?? []) pending.marker = { offset: Number(r[1]), type: r[2] ?? '?' };
      open.delete(batch.producerId);
    } else if (r[3] !== undefined) {
      copies.push({ offset: Number(r[1]), batch, value: r[3] });
    }
  }
  return copies;
}

/** What a read_committed consumer returns: non-transactional records, and transactional ones whose marker is a commit. */
const committed = (copies: readonly Copy[]) => copies.filter((c) => !c.batch.transactional || c.batch.marker?.type === 'COMMIT');

function dumpPartition(dir: string): string {
  const segments = readdirSync(dir).filter((f) => f.endsWith('.log')).sort().map((f) => join(dir, f));
  if (segments.length === 0) return '';
  return execFileSync('java', ['-cp', `${values['kafka-libs']}/*`, 'kafka.tools.DumpLogSegments', '--deep-iteration', '--print-data-log', '--files', segments.join(',')], {
    encoding: 'utf8',
    maxBuffer: 1024 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

function main(): void {
  const partitions = readdirSync(logDir!)
    .map((name) => new RegExp(`^${topic}-(\\d+)$`).exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (partitions.length === 0) throw new Error(`no partition of ${topic} in ${logDir}`);
  const byId = new Map<string, Copy[]>();
  let total = 0;
  let aborted = 0;
  for (const partition of partitions) {
    const copies = parseDump(partition, dumpPartition(join(logDir!, `${topic}-${partition}`)));
    const visible = committed(copies);
    total += visible.length;
    aborted += copies.length - visible.length;
    for (const copy of visible) {
      let id: string;
      try {
        id = String((JSON.parse(copy.value) as Record<string, unknown>)[field]);
      } catch {
        continue;
      }
      const list = byId.get(id);
      if (list === undefined) byId.set(id, [copy]);
      else list.push(copy);
    }
  }
  const twice = [...byId.entries()].filter(([, list]) => list.length > 1);
  console.log(`${topic}: ${total} committed records in ${partitions.length} partitions, ${aborted} aborted or pending, ${twice.length} ${field} values seen more than once`);
  const describeBatch = (b: Batch) =>
    `p${b.partition} batch ${b.baseOffset}-${b.lastOffset} producer ${b.producerId}/${b.producerEpoch} seq ${b.baseSequence} ${b.marker === undefined ? 'no marker' : `${b.marker.type}@${b.marker.offset}`}`;
  const describe = (c: Copy) => `${describeBatch(c.batch).replace(/^p\d+/, `p${c.batch.partition}@${c.offset}`)}`;
  const batches = new Map<Batch, number>();
  for (const [, list] of twice) for (const c of list) batches.set(c.batch, (batches.get(c.batch) ?? 0) + 1);
  console.log('batches holding the copies (duplicated records in each):');
  const inLogOrder = [...batches.entries()].sort(([x], [y]) => x.partition - y.partition || x.baseOffset - y.baseOffset);
  for (const [batch, n] of inLogOrder) console.log(`  ${describeBatch(batch)}: ${n}`);
  for (const [id, list] of twice.slice(0, Number(values.limit))) {
    console.log(`${field} ${id}:`);
    for (const c of list) console.log(`  ${describe(c)}  ${c.value.slice(0, 160)}`);
  }
}

main();
