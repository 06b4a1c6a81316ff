/**
 * Produces portfolio orders in the original JSON to the `orders` topic, keyed by portfolio_order_id.
 *   node scripts/queue-orders.ts --count 100 --accounts 1000 [--pairs] [--priority 1|2]
 */
import { TOPICS } from '@tradeflow/shared';
import { parseFeedArgs, runFeed } from './lib/feed.ts';
import { generateOrders } from './lib/orders.ts';

const NAME = 'queue-orders';
const { values, number, feedOptions } = parseFeedArgs(
  NAME,
  ' [--accounts N] [--pairs] [--priority 1|2] [--invalid N] [--symbols VTI,IVE,...] [--max-components N] [--start-time EPOCH_SECONDS] [--spacing SECONDS]',
  { count: 100, topic: TOPICS.orders },
  {
    accounts: { type: 'string', default: '1000' },
    pairs: { type: 'boolean', default: false },
    priority: { type: 'string' },
    invalid: { type: 'string', default: '0' },
    symbols: { type: 'string' },
    'max-components': { type: 'string', default: '5' },
    'start-time': { type: 'string' },
    spacing: { type: 'string', default: '0.001' },
  },
);
const priority = values['priority'];
if (priority !== undefined && priority !== '1' && priority !== '2') {
  process.stderr.write(`${NAME}: --priority must be 1 or 2, got ${String(priority)}\n`);
  process.exit(2);
}
const count = number('count', 0);
const invalid = number('invalid', 0);
/** With --start-time, order i is stamped start + i × spacing (reproducible); else the wall clock. */
let sequence = 0;
const startTime = typeof values['start-time'] === 'string' ? number('start-time', 0) : undefined;
const spacing = number('spacing', 0);
const summary = await runFeed(
  feedOptions(count),
  generateOrders({
    count,
    seed: number('seed', 0),
    accounts: number('accounts', 1),
    pairs: values['pairs'] === true,
    invalid,
    maxComponents: number('max-components', 1),
    ...(startTime === undefined ? {} : { timestamp: () => startTime + sequence++ * spacing }),
    ...(priority === undefined ? {} : { priority: Number(priority) as 1 | 2 }),
    ...(typeof values['symbols'] === 'string' ? { symbols: values['symbols'].split(',').map((s) => s.trim().toUpperCase()) } : {}),
  }),
);
process.stderr.write(
  `${NAME}: ${values['dry-run'] === true ? 'printed' : `sent to ${String(values['topic'])}`} ${summary.sent} orders (${invalid} invalid on purpose) in ${summary.elapsedSeconds.toFixed(2)} s, ${Math.round(summary.ratePerSecond)} orders/s\n`,
);
