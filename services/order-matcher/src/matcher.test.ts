import type { ChangelogEntry, ComponentOrder, Execution, PriceTick } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { Matcher, MatcherState, StateChanges } from './matcher.ts';

const NOW = 1_700_000_000;
const matcher = new Matcher({ maxPriceAgeSeconds: 5, windowSeconds: 1, now: () => NOW });
const ID = '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11';

/** Event times in these tests are seconds after T. */
const T = 1_600_000_000;
const price = (at: number, bid: number, ask: number, symbol = 'IVE'): PriceTick => ({ symbol, exchange: 'NYSEARCA', bid, ask, timestamp: T + at });
const order = (name: string, order_type: 'BUY' | 'SELL', amount: number, at: number, priority: 1 | 2 = 1, symbol = 'IVE'): ComponentOrder => ({
  taxpayer_id: 42,
  portfolio_order_id: ID,
  component_order_id: `${ID}/${name}`,
  order_type,
  symbol,
  amount,
  priority,
  timestamp: T + at,
});

function run(steps: (PriceTick | ComponentOrder)[], state = new MatcherState()): { state: MatcherState; executions: Execution[]; changes: StateChanges } {
  const executions: Execution[] = [];
  const changes = new StateChanges();
  for (const step of steps) {
    if ('bid' in step) matcher.onPrice(state, step, changes, executions);
    else matcher.onOrder(state, step, changes, executions);
  }
  return { state, executions, changes };
}

const summary = (e: Execution) => ({
  id: e.execution_id,
  side: e.net_side ?? e.order_type,
  price: e.requested_price,
  amount: e.requested_amount,
  shares: e.requested_shares,
  allocations: e.allocations!.map((a) => [a.component_order_id.split('/')[1], a.order_type, a.requested_amount, a.requested_shares]),
});

describe('pricing (rule 2)', () => {
  it('executes a BUY at the ask and a SELL at the bid, shares rounded down to 6 decimals', () => {
    const { executions } = run([price(1000, 93.97388, 94.190756), order('b', 'BUY', 1000, 1001), order('s', 'SELL', 500, 1001)]);
    expect(executions).toEqual([
      {
        taxpayer_id: 42,
        portfolio_order_id: ID,
        component_order_id: `${ID}/b`,
        market_order_id: `mo:${ID}/b`,
        execution_id: `ex:${ID}/b`,
        order_type: 'BUY',
        symbol: 'IVE',
        requested_amount: 1000,
        requested_shares: 10.616753,
        requested_price: 94.190756,
        timestamp: NOW,
        allocations: [
          { taxpayer_id: 42, portfolio_order_id: ID, component_order_id: `${ID}/b`, order_type: 'BUY', requested_amount: 1000, requested_shares: 10.616753, timestamp: T + 1001 },
        ],
      },
      expect.objectContaining({ order_type: 'SELL', requested_price: 93.97388, requested_shares: 5.320627 }),
    ]);
  });
});

describe('waiting for a price (rule 3)', () => {
  it('keeps an order that arrives before any price and executes it on the first price', () => {
    const first = run([order('b', 'BUY', 1000, 1001)]);
    expect(first.executions).toEqual([]);
    expect(first.state.pendingOrders().map((o) => o.component_order_id)).toEqual([`${ID}/b`]);
    const second = run([price(1001.5, 99, 100)], first.state);
    expect(second.executions.map(summary)).toEqual([
      { id: `ex:${ID}/b`, side: 'BUY', price: 100, amount: 1000, shares: 10, allocations: [['b', 'BUY', 1000, 10]] },
    ]);
    expect(second.state.pendingOrders()).toEqual([]);
  });

  it('never executes on a price older than MAX_PRICE_AGE, and executes on the first fresh one', () => {
    const { state, executions } = run([price(1004, 99, 100), order('b', 'BUY', 1000, 1010)]);
    expect(executions).toEqual([]);
    expect(run([price(1004.999, 98, 99)], state).executions).toEqual([]);
    expect(run([price(1005, 124, 125)], state).executions.map(summary)).toEqual([
      { id: `ex:${ID}/b`, side: 'BUY', price: 125, amount: 1000, shares: 8, allocations: [['b', 'BUY', 1000, 8]] },
    ]);
  });

  it('ignores an out-of-order older tick as the latest price', () => {
    const { state } = run([price(1005, 99, 100), price(1003, 50, 51)]);
    expect(state.prices.get('IVE')!.ask).toBe(100);
  });
});

describe('priority-2 netting (rule 5)', () => {
  it('nets buys and sells of one window into one net-buy block at the ask, with an allocation each', () => {
    const { executions } = run([price(2000, 101, 101.5), order('a', 'BUY', 1000, 2000.1, 2), order('b', 'SELL', 400, 2000.5, 2)]);
    expect(executions).toEqual([]);
    const closed = run([price(2000, 101, 101.5), order('a', 'BUY', 1000, 2000.1, 2), order('b', 'SELL', 400, 2000.5, 2), price(2001, 101, 101.5)]);
    expect(closed.executions.map(summary)).toEqual([
      {
        id: `blk:${ID}/a`,
        side: 'BUY',
        price: 101.5,
        amount: 600,
        shares: 5.91133,
        allocations: [
          ['a', 'BUY', 1000, 9.852216],
          ['b', 'SELL', 400, 3.940886],
        ],
      },
    ]);
  });

  it('nets to a sell block at the bid', () => {
    const { executions } = run([order('a', 'BUY', 300, 3000.2, 2), order('b', 'SELL', 800, 3000.4, 2), price(3001.2, 100.25, 100.5)]);
    expect(executions.map(summary)).toEqual([
      { id: `blk:${ID}/a`, side: 'SELL', price: 100.25, amount: 500, shares: 4.987531, allocations: [['a', 'BUY', 300, 2.992518], ['b', 'SELL', 800, 7.980049]] },
    ]);
  });

  it('prices a perfectly offsetting block at the mid', () => {
    const { executions } = run([order('a', 'BUY', 500, 4000.2, 2), order('b', 'SELL', 500, 4000.4, 2), price(4001, 100, 101)]);
    expect(executions.map(summary)).toEqual([
      { id: `blk:${ID}/a`, side: 'FLAT', price: 100.5, amount: 0, shares: 0, allocations: [['a', 'BUY', 500, 4.975124], ['b', 'SELL', 500, 4.975124]] },
    ]);
    expect(executions[0]!.order_type).toBe('BUY');
  });

  it('executes a single-order window as a block of one', () => {
    const { executions } = run([order('a', 'SELL', 250, 5000.5, 2), price(5001, 100.25, 100.5)]);
    expect(executions.map(summary)).toEqual([
      { id: `blk:${ID}/a`, side: 'SELL', price: 100.25, amount: 250, shares: 2.493765, allocations: [['a', 'SELL', 250, 2.493765]] },
    ]);
  });

  it('keeps windows of different seconds and symbols apart, and waits for a fresh price after closing', () => {
    const { executions, state } = run([
      order('a', 'BUY', 100, 6000.5, 2),
      order('b', 'BUY', 100, 6001.5, 2),
      order('c', 'BUY', 100, 6000.5, 2, 'VTI'),
      price(6002, 9, 10),
    ]);
    expect(executions.map((e) => [e.symbol, e.execution_id])).toEqual([
      ['IVE', `blk:${ID}/a`],
      ['IVE', `blk:${ID}/b`],
    ]);
    expect(state.pendingOrders().map((o) => o.component_order_id)).toEqual([`${ID}/c`]);
    expect(run([price(6002.1, 19, 20, 'VTI')], state).executions.map((e) => [e.symbol, e.requested_price])).toEqual([['VTI', 20]]);
  });
});

describe('state (rule 6)', () => {
  it('rebuilds prices, waiting orders, open windows and stream time from the changelog', () => {
    const { state, changes } = run([price(1000, 99, 100), order('w', 'BUY', 100, 1010), order('p', 'SELL', 50, 1010.5, 2), order('x', 'BUY', 10, 1001)]);
    const restored = matcher.restore(matcher.changelogOf(state, changes));
    expect(restored.streamTime).toBe(T + 1010.5);
    expect([...restored.prices.values()]).toEqual([price(1000, 99, 100)]);
    expect(restored.pendingOrders()).toEqual(state.pendingOrders());
    expect(restored.pendingOrders().map((o) => o.component_order_id)).toEqual([`${ID}/w`, `${ID}/p`]);
  });

  it('writes a tombstone for an order that executes after it was persisted, and nothing for one that never waited', () => {
    const first = run([order('w', 'BUY', 100, 1010)]);
    const second = run([price(1010, 9, 10), order('now', 'BUY', 10, 1010)], first.state);
    expect(matcher.changelogOf(second.state, second.changes).map((e) => [e.key, e.value === null ? null : 'value'])).toEqual([
      ['price|IVE', 'value'],
      [`order|${ID}/w`, null],
    ]);
  });
});

/**
 * The rules as first written: every price and order looks at every window (closed ones oldest
 * first). The matcher looks only at the windows a step can change; both must execute the same
 * orders in the same order, and leave the same orders pending.
 */
class ScanEveryWindow {
  readonly prices = new Map<string, PriceTick>();
  readonly waiting = new Map<string, ComponentOrder[]>();
  readonly windows = new Map<string, { symbol: string; start: number; orders: ComponentOrder[] }>();
  streamTime = 0;

  private readonly m: Matcher;

  constructor(m: Matcher) {
    this.m = m;
  }

  private fresh(price: PriceTick | undefined, at: number): price is PriceTick {
    return price !== undefined && price.timestamp >= at - this.m.config.maxPriceAgeSeconds;
  }

  step(event: PriceTick | ComponentOrder, out: Execution[]): void {
    this.streamTime = Math.max(this.streamTime, event.timestamp);
    if ('bid' in event) {
      const latest = this.prices.get(event.symbol);
      if (latest === undefined || event.timestamp >= latest.timestamp) {
        this.prices.set(event.symbol, event);
        const still = (this.waiting.get(event.symbol) ?? []).filter((o) => !(this.fresh(event, o.timestamp) && out.push(this.m.executeSingle(o, event))));
        this.waiting.set(event.symbol, still);
      }
    } else if (event.priority === 1 && this.fresh(this.prices.get(event.symbol), event.timestamp)) {
      out.push(this.m.executeSingle(event, this.prices.get(event.symbol)!));
    } else if (event.priority === 1) {
      this.waiting.set(event.symbol, [...(this.waiting.get(event.symbol) ?? []), event]);
    } else {
      const start = Math.floor(event.timestamp / this.m.config.windowSeconds) * this.m.config.windowSeconds;
      const key = `${event.symbol}@${start}`;
      const window = this.windows.get(key) ?? { symbol: event.symbol, start, orders: [] };
      window.orders.push(event);
      this.windows.set(key, window);
    }
    const closed = [...this.windows].filter(([, w]) => w.start + this.m.config.windowSeconds <= this.streamTime).sort((a, b) => a[1].start - b[1].start);
    for (const [key, window] of closed) {
      const price = this.prices.get(window.symbol);
      if (!this.fresh(price, Math.max(...window.orders.map((o) => o.timestamp)))) continue;
      out.push(this.m.executeBlock(window, price));
      this.windows.delete(key);
    }
  }
}

describe('which windows a step looks at', () => {
  it('executes exactly what scanning every window executes, in the same order, over 20,000 random prices and orders', () => {
    // A small random generator of its own, so that every run sees the same events.
    let seed = 12_345;
    const next = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const symbols = ['IVE', 'IVV', 'VTI', 'IJH', 'AGG'];
    for (const config of [
      { maxPriceAgeSeconds: 5, windowSeconds: 1 },
      { maxPriceAgeSeconds: 0.5, windowSeconds: 2 },
    ]) {
      const m = new Matcher({ ...config, now: () => NOW });
      const reference = new ScanEveryWindow(m);
      let state = new MatcherState();
      let changes = new StateChanges();
      const got: Execution[] = [];
      const expected: Execution[] = [];
      const changelog: ChangelogEntry[] = [];
      let clock = 0;
      for (let i = 0; i < 10_000; i++) {
        clock += next() * 0.3;
        // Late events (up to 8 s back) reach windows closed already and prices gone stale.
        const at = clock - (next() < 0.2 ? next() * 8 : 0);
        const symbol = symbols[Math.floor(next() * symbols.length)]!;
        const event =
          next() < 0.3
            ? price(at, 100, 100 + Math.floor(next() * 100) / 100, symbol)
            : order(String(i), next() < 0.5 ? 'BUY' : 'SELL', 1 + Math.floor(next() * 1_000), at, next() < 0.6 ? 2 : 1, symbol);
        reference.step(event, expected);
        if ('bid' in event) m.onPrice(state, event, changes, got);
        else m.onOrder(state, event, changes, got);
        // Now and then the task is restored from its changelog, as after a restart.
        if (i % 2_500 === 2_499) {
          changelog.push(...m.changelogOf(state, changes));
          state = m.restore(changelog);
          changes = new StateChanges();
        }
      }
      expect(got.length).toBeGreaterThan(1_000);
      expect(got.map((e) => e.execution_id)).toEqual(expected.map((e) => e.execution_id));
      expect(got).toEqual(expected);
      const pending = (orders: ComponentOrder[]) => orders.map((o) => o.component_order_id).sort();
      expect(pending(state.pendingOrders())).toEqual(pending([...[...reference.waiting.values()].flat(), ...[...reference.windows.values()].flatMap((w) => w.orders)]));
    }
  });
});
