/**
 * Reproducible tick stream in the original feed's JSON: a random walk of the mid price per symbol,
 * a spread of 1-10 basis points so bid < ask, six decimals like the original, and optionally
 * invalid messages of every kind mixed in at seeded positions.
 */
import { INSTRUMENTS, type Instrument } from './market.ts';
import { Random } from './random.ts';

export interface GeneratedMessage {
  readonly key: string | null;
  readonly value: string;
  readonly valid: boolean;
}

export interface TickOptions {
  readonly count: number;
  readonly seed: number;
  /** How many of the `count` messages are invalid on purpose. */
  readonly invalid?: number;
  /** Restrict to these symbols (default: all instruments). */
  readonly symbols?: readonly string[];
  /** Epoch seconds of the first tick; with `spacingSeconds` the timestamps are reproducible. Default: the wall clock. */
  readonly startTime?: number;
  readonly spacingSeconds?: number;
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

const INVALID_KINDS: readonly ((rng: Random, tick: Record<string, unknown>) => string)[] = [
  () => 'this is not json',
  (_rng, tick) => JSON.stringify({ ...tick, bid: Number(tick['ask']) + 1 }),
  (_rng, tick) => JSON.stringify({ ...tick, bid: -Number(tick['bid']) }),
  (_rng, tick) => JSON.stringify({ ...tick, ask: undefined }),
  (_rng, tick) => JSON.stringify({ ...tick, timestamp: Number(tick['timestamp']) * 1000 }),
  (_rng, tick) => JSON.stringify({ ...tick, ask: 'NaN' }),
  (_rng, tick) => JSON.stringify({ ...tick, symbol: 'not a ticker' }),
  (_rng, tick) => JSON.stringify({ ...tick, padding: 'x'.repeat(8_192) }),
  (_rng, tick) => JSON.stringify(tick).replace('"bid":', '"bid": NaN, "_":'),
];

export function* generateTicks(options: TickOptions): Generator<GeneratedMessage> {
  const rng = new Random(options.seed);
  const instruments: Instrument[] =
    options.symbols === undefined ? [...INSTRUMENTS] : INSTRUMENTS.filter((i) => options.symbols!.includes(i.symbol));
  if (instruments.length === 0) throw new Error(`no known instrument among ${options.symbols?.join(', ')}`);
  const mids = instruments.map((i) => i.price);
  const invalid = Math.min(options.invalid ?? 0, options.count);
  const invalidAt = new Set<number>();
  while (invalidAt.size < invalid) invalidAt.add(rng.int(0, options.count - 1));
  const start = options.startTime;
  const spacing = options.spacingSeconds ?? 0.001;

  for (let i = 0; i < options.count; i++) {
    const n = rng.int(0, instruments.length - 1);
    const instrument = instruments[n]!;
    mids[n] = mids[n]! * Math.exp(0.0005 * rng.normal());
    const halfSpread = (mids[n]! * (1 + rng.int(0, 9))) / 20_000;
    const timestamp = start === undefined ? Date.now() / 1000 : start + i * spacing;
    const tick = {
      ask: round6(mids[n]! + halfSpread),
      timestamp: round6(timestamp),
      symbol: instrument.symbol,
      bid: round6(mids[n]! - halfSpread),
      exchange: instrument.exchange,
    };
    if (invalidAt.has(i)) {
      yield { key: instrument.symbol, value: rng.pick(INVALID_KINDS)(rng, tick), valid: false };
    } else {
      yield { key: instrument.symbol, value: JSON.stringify(tick), valid: true };
    }
  }
}
