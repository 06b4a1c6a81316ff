/**
 * Decoding the messages the services pass each other (JSON → validated value), per message, with
 * each schema's fast path (packages/shared/src/fast-paths.ts) and with the zod schema alone,
 * side by side in one run. No Kafka needed.   node scripts/bench-decode.ts [--count 20000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { ComponentOrder, decodeMessage, Execution, Fill, type Decoded } from '@tradeflow/shared';
import { splitPortfolioOrder } from '../services/order-matcher/src/split.ts';
import { generateExecutions, generateFills, generateOrders } from './lib/orders.ts';
import { Report } from './lib/report.ts';

const { values } = parseArgs({ options: { count: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } } });
const COUNT = Number(values.count);
const ROUNDS = Number(values.rounds);

const bytes = (xs: Iterable<string>) => [...xs].map((x) => Buffer.from(x));
const inputs = [
  ['component order', ComponentOrder, bytes([...generateOrders({ count: COUNT, seed: 1, accounts: 10_000 })].flatMap((m) => splitPortfolioOrder(m.order as never).map((c) => JSON.stringify(c))))],
  ['execution with an allocation', Execution, bytes([...generateExecutions({ count: COUNT, seed: 2, accounts: 10_000, allocations: true })].map((m) => m.value))],
  ['fill', Fill, bytes([...generateFills({ count: COUNT, seed: 3, accounts: 10_000 })].map((m) => m.value))],
] as const;

/** Best of ROUNDS passes (the machine is shared), in µs per message. */
function time(messages: readonly Buffer[], decode: (b: Buffer) => Decoded<unknown>): number {
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    const started = performance.now();
    for (const message of messages) if (!decode(message).ok) throw new Error(`rejected: ${message.toString()}`);
    best = Math.min(best, ((performance.now() - started) * 1000) / messages.length);
  }
  return best;
}

const report = new Report();
for (const [name, schema, messages] of inputs) {
  const schemaOnly = time(messages, (b) => decodeMessage(schema, b, false));
  const fast = time(messages, (b) => decodeMessage(schema, b));
  const parseOnly = time(messages, (b) => ({ ok: true, value: JSON.parse(b.toString('utf8')) }));
  report.add(`decode ${name}`, `${fast.toFixed(2)} µs with the fast path`, `${schemaOnly.toFixed(2)} µs with zod alone (${(schemaOnly / fast).toFixed(1)}x); JSON.parse alone ${parseOnly.toFixed(2)} µs; ${messages.length.toLocaleString('en-US')} messages, best of ${ROUNDS}`);
}
report.print();
