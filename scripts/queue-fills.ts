/**
 * Produces fills to `fills`, keyed by taxpayer_id, to exercise positions and influx-writer alone.
 *   node scripts/queue-fills.ts --count 100 --accounts 1000
 */
import { TOPICS } from '@tradeflow/shared';
import { parseFeedArgs, runFeed } from './lib/feed.ts';
import { generateFills } from './lib/orders.ts';

const NAME = 'queue-fills';
const { values, number, feedOptions } = parseFeedArgs(NAME, ' [--accounts N]', { count: 100, topic: TOPICS.fills }, { accounts: { type: 'string', default: '1000' } });
const count = number('count', 0);
const summary = await runFeed(
  feedOptions(count),
  generateFills({ count, seed: number('seed', 0), accounts: number('accounts', 1) }),
);
process.stderr.write(`${NAME}: ${values['dry-run'] === true ? 'printed' : 'sent'} ${summary.sent} fills in ${summary.elapsedSeconds.toFixed(2)} s, ${Math.round(summary.ratePerSecond)}/s\n`);
