/**
 * Rules 2-6 of the rule engine as a pure state machine over one partition (a task): the latest
 * price per symbol, the component orders not executed yet, and the stream time. Facts in
 * (prices, component orders), executions out, plus the state changes to persist.
 *
 * - Price: BUY at the ask, SELL at the bid; shares = amount / price rounded down to 6 decimals.
 * - Freshness, in event time: a price is fresh for an order when price.timestamp ≥
 *   order.timestamp − maxPriceAge. Without a fresh price an order waits and executes on the first
 *   fresh one; it is never dropped and never executed on a stale price.
 * - Priority 1 executes as soon as a fresh price allows.
 * - Priority 2 orders of a symbol are collected in tumbling windows of their timestamps
 *   [k·W, (k+1)·W). A window closes when the partition's stream time (the highest timestamp of
 *   any price or order seen) reaches its end; then its orders are netted into one block that
 *   executes on a fresh price (fresh for the block's latest order): at the ask when net buying,
 *   the bid when net selling, the mid when buys and sells offset exactly. Every allocation is
 *   filled at the block's price.
 */
import {
  ComponentOrder,
  fromMicros,
  PriceTick,
  roundDiv,
  sharesFor,
  toMicros,
  type Allocation,
  type ChangelogEntry,
  type Execution,
} from '@tradeflow/shared';

export interface MatcherConfig {
  /** MAX_PRICE_AGE in seconds. */
  readonly maxPriceAgeSeconds: number;
  /** NETTING_WINDOW in seconds. */
  readonly windowSeconds: number;
  /** Wall clock for execution timestamps, epoch seconds. */
  readonly now: () => number;
}

interface Window {
  readonly symbol: string;
  readonly start: number;
  readonly orders: ComponentOrder[];
  /** The latest timestamp of its orders: the block's price must be fresh for it. */
  latest: number;
  /** Its place among windows made in this state (a map's insertion order): ties of `start` execute in it. */
  readonly seq: number;
  /** Its end has been reached (it stays closed: the stream time never goes back). */
  closed: boolean;
}

export class MatcherState {
  readonly prices = new Map<string, PriceTick>();
  /** Priority-1 orders waiting for a fresh price, per symbol, in arrival order. */
  readonly waiting = new Map<string, ComponentOrder[]>();
  /** Priority-2 windows by `${symbol}@${start}`, open or closed but not yet priced. */
  readonly windows = new Map<string, Window>();
  streamTime = 0;
  /**
   * What lets a step look at only the windows whose fate it can change, not at all of them (a scan
   * of every window on every price and order took most of the matcher's time with many symbols):
   * the earliest end of a window not known to be closed, the closed windows waiting for a fresh
   * price per symbol, and the closed windows this step changed (a new order, a new price).
   */
  openUntil = Number.POSITIVE_INFINITY;
  readonly unpriced = new Map<string, Set<Window>>();
  readonly touched = new Set<Window>();
  windowSeq = 0;

  /** Every component order not executed yet. */
  pendingOrders(): ComponentOrder[] {
    return [...[...this.waiting.values()].flat(), ...[...this.windows.values()].flatMap((w) => w.orders)];
  }
}

/** What one step changed, to persist in the changelog. */
export class StateChanges {
  readonly prices = new Set<string>();
  /** Orders that started waiting in this step; those also in `removed` executed within it. */
  readonly added = new Map<string, ComponentOrder>();
  readonly removed = new Set<string>();
  timeChanged = false;
}

export const CHANGELOG_KEYS = {
  price: (symbol: string) => `price|${symbol}`,
  order: (componentOrderId: string) => `order|${componentOrderId}`,
  time: 'time',
} as const;

const windowStart = (timestamp: number, windowSeconds: number) => Math.floor(timestamp / windowSeconds) * windowSeconds;

export class Matcher {
  readonly config: MatcherConfig;

  constructor(config: MatcherConfig) {
    this.config = config;
  }

  private isFresh(price: PriceTick | undefined, referenceTime: number): price is PriceTick {
    return price !== undefined && price.timestamp >= referenceTime - this.config.maxPriceAgeSeconds;
  }

  private advance(state: MatcherState, changes: StateChanges, timestamp: number): void {
    if (timestamp > state.streamTime) {
      state.streamTime = timestamp;
      changes.timeChanged = true;
    }
  }

  onPrice(state: MatcherState, price: PriceTick, changes: StateChanges, out: Execution[]): void {
    this.advance(state, changes, price.timestamp);
    const latest = state.prices.get(price.symbol);
    if (latest === undefined || price.timestamp >= latest.timestamp) {
      state.prices.set(price.symbol, price);
      changes.prices.add(price.symbol);
      this.executeWaiting(state, price.symbol, changes, out);
      for (const window of state.unpriced.get(price.symbol) ?? []) state.touched.add(window);
    }
    this.closeWindows(state, changes, out);
  }

  onOrder(state: MatcherState, order: ComponentOrder, changes: StateChanges, out: Execution[]): void {
    this.advance(state, changes, order.timestamp);
    const price = state.prices.get(order.symbol);
    if (order.priority === 1 && this.isFresh(price, order.timestamp)) {
      out.push(this.executeSingle(order, price));
    } else {
      this.addPending(state, order);
      changes.added.set(order.component_order_id, order);
    }
    this.closeWindows(state, changes, out);
  }

  /** Queues a priority-1 order for a fresh price, or puts a priority-2 order in its window. */
  private addPending(state: MatcherState, order: ComponentOrder): void {
    if (order.priority === 1) {
      const queue = state.waiting.get(order.symbol) ?? [];
      queue.push(order);
      state.waiting.set(order.symbol, queue);
      return;
    }
    const start = windowStart(order.timestamp, this.config.windowSeconds);
    const key = `${order.symbol}@${start}`;
    let window = state.windows.get(key);
    if (window === undefined) {
      const end = start + this.config.windowSeconds;
      // A window made for a late order may be closed already: looked at in this step, with no scan.
      window = { symbol: order.symbol, start, orders: [], latest: order.timestamp, seq: state.windowSeq++, closed: end <= state.streamTime };
      state.windows.set(key, window);
      if (!window.closed) state.openUntil = Math.min(state.openUntil, end);
    }
    window.orders.push(order);
    if (order.timestamp > window.latest) window.latest = order.timestamp;
    // A late order in a closed window: the window may be priced now (fresh for a later order or not).
    if (window.closed) state.touched.add(window);
  }

  /** Priority-1 orders of a symbol that the latest price makes executable. */
  private executeWaiting(state: MatcherState, symbol: string, changes: StateChanges, out: Execution[]): void {
    const queue = state.waiting.get(symbol);
    if (queue === undefined) return;
    const price = state.prices.get(symbol);
    const still: ComponentOrder[] = [];
    for (const order of queue) {
      if (this.isFresh(price, order.timestamp)) {
        out.push(this.executeSingle(order, price));
        changes.removed.add(order.component_order_id);
      } else {
        still.push(order);
      }
    }
    if (still.length === 0) state.waiting.delete(symbol);
    else state.waiting.set(symbol, still);
  }

  /**
   * Closed windows with a fresh price become blocks, oldest window first (by start, then by when
   * the window was made). Only windows this step can have changed are looked at: those it closed,
   * and closed ones that got a new price or a late order. A closed window waiting for a price is
   * not fresh until one of those happens to it, so it is left out without being looked at.
   */
  private closeWindows(state: MatcherState, changes: StateChanges, out: Execution[]): void {
    if (state.streamTime < state.openUntil && state.touched.size === 0) return;
    const candidates = [...state.touched];
    state.touched.clear();
    if (state.streamTime >= state.openUntil) {
      let openUntil = Number.POSITIVE_INFINITY;
      for (const window of state.windows.values()) {
        if (window.closed) continue;
        const end = window.start + this.config.windowSeconds;
        if (end <= state.streamTime) {
          window.closed = true;
          candidates.push(window);
        } else if (end < openUntil) openUntil = end;
      }
      state.openUntil = openUntil;
    }
    if (candidates.length > 1) candidates.sort((a, b) => a.start - b.start || a.seq - b.seq);
    for (const window of candidates) {
      const price = state.prices.get(window.symbol);
      let unpriced = state.unpriced.get(window.symbol);
      if (!this.isFresh(price, window.latest)) {
        if (unpriced === undefined) state.unpriced.set(window.symbol, (unpriced = new Set()));
        unpriced.add(window);
        continue;
      }
      out.push(this.executeBlock(window, price));
      state.windows.delete(`${window.symbol}@${window.start}`);
      unpriced?.delete(window);
      if (unpriced?.size === 0) state.unpriced.delete(window.symbol);
      for (const order of window.orders) changes.removed.add(order.component_order_id);
    }
  }

  executeSingle(order: ComponentOrder, price: PriceTick): Execution {
    const priceMicros = toMicros(order.order_type === 'BUY' ? price.ask : price.bid);
    const shares = fromMicros(sharesFor(toMicros(order.amount), priceMicros));
    return {
      taxpayer_id: order.taxpayer_id,
      portfolio_order_id: order.portfolio_order_id,
      component_order_id: order.component_order_id,
      market_order_id: `mo:${order.component_order_id}`,
      execution_id: `ex:${order.component_order_id}`,
      order_type: order.order_type,
      symbol: order.symbol,
      requested_amount: order.amount,
      requested_shares: shares,
      requested_price: fromMicros(priceMicros),
      timestamp: this.config.now(),
      allocations: [allocationOf(order, shares)],
    };
  }

  executeBlock(window: Pick<Window, 'symbol' | 'orders'>, price: PriceTick): Execution {
    let net = 0n;
    for (const order of window.orders) net += order.order_type === 'BUY' ? toMicros(order.amount) : -toMicros(order.amount);
    const side = net > 0n ? 'BUY' : net < 0n ? 'SELL' : 'FLAT';
    const bid = toMicros(price.bid);
    const ask = toMicros(price.ask);
    const priceMicros = side === 'BUY' ? ask : side === 'SELL' ? bid : roundDiv(bid + ask, 2n);
    let netShares = 0n;
    const allocations = window.orders.map((order) => {
      const shares = sharesFor(toMicros(order.amount), priceMicros);
      netShares += order.order_type === 'BUY' ? shares : -shares;
      return allocationOf(order, fromMicros(shares));
    });
    const first = window.orders[0]!;
    const blockId = `blk:${first.component_order_id}`;
    return {
      taxpayer_id: first.taxpayer_id,
      portfolio_order_id: first.portfolio_order_id,
      component_order_id: first.component_order_id,
      market_order_id: blockId,
      execution_id: blockId,
      order_type: side === 'SELL' ? 'SELL' : 'BUY',
      net_side: side,
      symbol: window.symbol,
      requested_amount: fromMicros(net < 0n ? -net : net),
      requested_shares: fromMicros(netShares < 0n ? -netShares : netShares),
      requested_price: fromMicros(priceMicros),
      timestamp: this.config.now(),
      allocations,
    };
  }

  /** The changelog entries for what changed; an order added and executed in one step needs none. */
  changelogOf(state: MatcherState, changes: StateChanges): ChangelogEntry[] {
    const entries: ChangelogEntry[] = [];
    for (const symbol of changes.prices) {
      entries.push({ key: CHANGELOG_KEYS.price(symbol), value: Buffer.from(JSON.stringify(state.prices.get(symbol))) });
    }
    for (const [id, order] of changes.added) {
      if (!changes.removed.has(id)) entries.push({ key: CHANGELOG_KEYS.order(id), value: Buffer.from(JSON.stringify(order)) });
    }
    for (const id of changes.removed) {
      if (!changes.added.has(id)) entries.push({ key: CHANGELOG_KEYS.order(id), value: null });
    }
    if (changes.timeChanged) entries.push({ key: CHANGELOG_KEYS.time, value: Buffer.from(String(state.streamTime)) });
    return entries;
  }

  /** Rebuilds a task's state from its changelog; later entries of a key win, null deletes it. */
  restore(entries: readonly ChangelogEntry[]): MatcherState {
    const latest = new Map<string, Buffer | null>();
    for (const entry of entries) latest.set(entry.key, entry.value);
    const state = new MatcherState();
    const orders: ComponentOrder[] = [];
    for (const [key, value] of latest) {
      if (value === null) continue;
      if (key === CHANGELOG_KEYS.time) state.streamTime = Number(value.toString());
      else if (key.startsWith('price|')) {
        const price = PriceTick.parse(JSON.parse(value.toString()));
        state.prices.set(price.symbol, price);
      } else if (key.startsWith('order|')) orders.push(ComponentOrder.parse(JSON.parse(value.toString())));
    }
    for (const order of orders) this.addPending(state, order);
    return state;
  }
}

function allocationOf(order: ComponentOrder, shares: number): Allocation {
  return {
    taxpayer_id: order.taxpayer_id,
    portfolio_order_id: order.portfolio_order_id,
    component_order_id: order.component_order_id,
    order_type: order.order_type,
    requested_amount: order.amount,
    requested_shares: shares,
    timestamp: order.timestamp,
  };
}
