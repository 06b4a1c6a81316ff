/**
 * Produces ticks in the original feed's JSON to the `ticks` topic, keyed by symbol.
 *   node scripts/queue-ticks.ts --count 100000 --rate 0 --seed 1
 */
import { TOPICS } from '@tradeflow/shared';
import { parseFeedArgs, runFeed } from './lib/feed.ts';
import { generateTicks } from './lib/ticks.ts';

const NAME = 'queue-ticks';
const { values, number, feedOptions } = parseFeedArgs(
  NAME,
  ' [--invalid N] [--symbols VTI,IVE,...] [--start-time EPOCH_SECONDS] [--spacing SECONDS]',
  { count: 100_000, topic: TOPICS.ticks },
  {
    invalid: { type: 'string', default: '0' },
    symbols: { type: 'string' },
    'start-time': { type: 'string' },
    spacing: { type: 'string', default: '0.001' },
  },
);

const count = number('count', 0);
const invalid = number('invalid', 0);
const symbols = typeof values['symbols'] === 'string' ? values['symbols'].split(',').map((s) => s.trim().toUpperCase()) : undefined;
const startTime = typeof values['start-time'] === 'string' ? number('start-time', 0) : undefined;

const summary = await runFeed(
  feedOptions(count),
  generateTicks({
    count,
    seed: number('seed', 0),
    invalid,
    ...(symbols === undefined ? {} : { symbols }),
    ...(startTime === undefined ? {} : { startTime, spacingSeconds: number('spacing', 0) }),
  }),
);
process.stderr.write(
  `${NAME}: ${values['dry-run'] === true ? 'printed' : `sent to ${String(values['topic'])}`} ${summary.sent} ticks (${invalid} invalid on purpose) in ${summary.elapsedSeconds.toFixed(2)} s, ${Math.round(summary.ratePerSecond)} ticks/s\n`,
);
