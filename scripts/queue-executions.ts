/**
 * Produces executions (the original's "market order aka execution") to `executions`, keyed by
 * symbol, to exercise fill-publisher alone.   node scripts/queue-executions.ts --count 100 [--allocations]
 */
import { TOPICS } from '@tradeflow/shared';
import { parseFeedArgs, runFeed } from './lib/feed.ts';
import { generateExecutions } from './lib/orders.ts';

const NAME = 'queue-executions';
const { values, number, feedOptions } = parseFeedArgs(NAME, ' [--accounts N] [--allocations]', { count: 100, topic: TOPICS.executions }, {
  accounts: { type: 'string', default: '1000' },
  allocations: { type: 'boolean', default: false },
});
const count = number('count', 0);
const summary = await runFeed(
  feedOptions(count),
  generateExecutions({ count, seed: number('seed', 0), accounts: number('accounts', 1), allocations: values['allocations'] === true }),
);
process.stderr.write(`${NAME}: ${values['dry-run'] === true ? 'printed' : 'sent'} ${summary.sent} executions in ${summary.elapsedSeconds.toFixed(2)} s, ${Math.round(summary.ratePerSecond)}/s\n`);
