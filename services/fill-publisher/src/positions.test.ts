import { fastPathOf, Position, type Fill } from '@tradeflow/shared';
import { describe, expect, it } from 'vitest';
import { Random } from '../../../scripts/lib/random.ts';
import { patchSnapshot, PositionBook, type Account } from './positions.ts';

/** Decimal text → micro-units by string arithmetic, independent of the code under test. */
function microsOfText(text: string): bigint {
  const negative = text.startsWith('-');
  const [whole, fraction = ''] = (negative ? text.slice(1) : text).split('.');
  const micros = BigInt(whole!) * 1_000_000n + BigInt(fraction.padEnd(6, '0'));
  return negative ? -micros : micros;
}

const fill = (taxpayer_id: number, symbol: string, delta_shares_position: number, delta_cash_position: number, n: number): Fill => ({
  taxpayer_id, portfolio_order_id: '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11', component_order_id: `c${n}`, market_order_id: `m${n}`, execution_id: `e${n}`, fill_id: `f${n}`,
  symbol, order_type: delta_shares_position >= 0 ? 'BUY' : 'SELL', filled_amount: Math.abs(delta_cash_position), filled_shares: Math.abs(delta_shares_position), filled_price: 1,
  delta_shares_position, delta_cash_position, timestamp: 1_700_000_000 + n,
});

describe('PositionBook', () => {
  it('sums shares per symbol and cash', () => {
    const book = new PositionBook();
    book.apply(fill(1, 'IVE', 10.616753, -999.999991, 1));
    book.apply(fill(1, 'IVE', -3.940886, 399.999929, 2));
    book.apply(fill(1, 'VTI', 0.1, -10.55, 3));
    expect(PositionBook.snapshot(book.account(1)!)).toEqual({
      taxpayer_id: 1, shares: { IVE: 6.675867, VTI: 0.1 }, cash: -610.550062, fills: 3, timestamp: 1_700_000_003,
    });
  });

  it('lists symbols in order also when a symbol arrives after a snapshot', () => {
    const book = new PositionBook();
    book.apply(fill(7, 'VTI', 1, -10, 1));
    book.apply(fill(7, 'IWS', 2, -20, 2));
    expect(JSON.stringify(PositionBook.snapshot(book.account(7)!).shares)).toBe('{"IWS":2,"VTI":1}');
    book.apply(fill(7, 'IVE', 3, -30, 3));
    book.apply(fill(7, 'VTI', 1, -10, 4));
    expect(JSON.stringify(PositionBook.snapshot(book.account(7)!).shares)).toBe('{"IVE":3,"IWS":2,"VTI":2}');
  });

  it('equals the exact sum of 100,000 random fills to the last digit (no floating-point drift)', () => {
    const rng = new Random(2024);
    const symbols = ['VTI', 'IVE', 'IWS', 'AAPL', 'MSFT'];
    const book = new PositionBook();
    const expected = new Map<string, bigint>();
    const add = (key: string, text: string) => expected.set(key, (expected.get(key) ?? 0n) + microsOfText(text));
    for (let n = 0; n < 100_000; n++) {
      const taxpayer = rng.int(1, 50);
      const symbol = rng.pick(symbols);
      const sign = rng.next() < 0.5 ? -1 : 1;
      const shares = Number((rng.int(1, 50_000_000) / 1e6).toFixed(6)) * sign;
      const cash = Number((rng.int(1, 5_000_000_000) / 1e6).toFixed(6)) * -sign;
      const f = JSON.parse(JSON.stringify(fill(taxpayer, symbol, shares, cash, n))) as Fill;
      book.apply(f);
      add(`${taxpayer}/${symbol}`, JSON.stringify(f.delta_shares_position));
      add(`${taxpayer}/cash`, JSON.stringify(f.delta_cash_position));
    }
    let checked = 0;
    for (const taxpayer of book.accounts.keys()) {
      const snapshot = JSON.parse(JSON.stringify(PositionBook.snapshot(book.account(taxpayer)!))) as { cash: number; shares: Record<string, number> };
      expect(microsOfText(JSON.stringify(snapshot.cash))).toBe(expected.get(`${taxpayer}/cash`));
      for (const [symbol, shares] of Object.entries(snapshot.shares)) {
        expect(microsOfText(JSON.stringify(shares))).toBe(expected.get(`${taxpayer}/${symbol}`));
        checked++;
      }
    }
    expect(checked).toBe(250);
  });

  it('restores accounts from their snapshots exactly', () => {
    const book = new PositionBook();
    book.apply(fill(3, 'IVE', 1.000001, -94.190756, 1));
    const restored = new PositionBook();
    restored.restoreSnapshot(JSON.parse(JSON.stringify(PositionBook.snapshot(book.account(3)!))));
    restored.apply(fill(3, 'IVE', 0.999999, -5.809244, 2));
    expect(PositionBook.snapshot(restored.account(3)!)).toEqual({ taxpayer_id: 3, shares: { IVE: 2 }, cash: -100, fills: 2, timestamp: 1_700_000_002 });
  });

  describe('snapshot bytes and accounts read back', () => {
    // Ordinary tickers and keys an object treats differently (array indexes come first, `__proto__` is not a property).
    const SYMBOLS = ['VTI', 'IVE', 'BRK.B', 'A', 'ZZ9', 'a"b\\c', 'é', '', '0', '9', '10', '01', '4294967294', '4294967295', '__proto__', 'constructor', 'toString'];
    const micros = (rng: Random): bigint => {
      const size = rng.pick([0, 1, 6, 12, 18, 24]);
      const magnitude = BigInt(Math.floor(rng.next() * 10 ** Math.min(size, 15))) * 10n ** BigInt(Math.max(0, size - 15));
      return rng.next() < 0.5 ? -magnitude : magnitude;
    };
    const randomAccount = (rng: Random, n: number): Account => {
      const shares = new Map<string, bigint>();
      for (let i = rng.int(0, 6); i > 0; i--) shares.set(rng.pick(SYMBOLS), micros(rng));
      return { taxpayerId: rng.int(1, 2 ** 40), shares, cash: micros(rng), fills: rng.int(0, 10 ** 6), timestamp: 946_684_800 + rng.next() * 3e9 + n };
    };

    it('writes exactly the bytes of JSON.stringify of the snapshot, for any symbols', () => {
      const rng = new Random(77);
      for (let n = 0; n < 5_000; n++) {
        const account = randomAccount(rng, n);
        const expected = JSON.stringify(PositionBook.snapshot({ ...account, shares: new Map(account.shares) }));
        expect(PositionBook.snapshotText(account)).toBe(expected);
        // Again, with the symbols' order kept from the first time.
        expect(PositionBook.snapshotText(account)).toBe(expected);
      }
    });

    it("reads back what decodeMessage's quick check accepts, as fromSnapshot builds it, and nothing else", () => {
      const rng = new Random(78);
      const check = fastPathOf(Position)!;
      const breakages: ((json: Record<string, unknown>) => void)[] = [
        (j) => delete j[rng.pick(['taxpayer_id', 'shares', 'cash', 'fills', 'timestamp'])],
        (j) => (j[rng.pick(['taxpayer_id', 'shares', 'cash', 'fills', 'timestamp'])] = rng.pick([null, '1', true, [], {}, -1, 0, 1.5, 2 ** 60, 1e12, 1_700_000_000])),
        (j) => ((j['shares'] as Record<string, unknown>)[rng.pick(SYMBOLS)] = rng.pick([null, '1', {}, [], 1, -2.5])),
        (j) => (j['extra'] = 1),
      ];
      let accepted = 0;
      for (let n = 0; n < 5_000; n++) {
        let text = PositionBook.snapshotText(randomAccount(rng, n));
        if (rng.next() < 0.6) {
          const json = JSON.parse(text) as Record<string, unknown>;
          rng.pick(breakages)(json);
          text = JSON.stringify(json);
        }
        if (rng.next() < 0.05) text = rng.pick([text.replace('"cash":', '"cash":1e400,"x":'), text.slice(0, -1), `[${text}]`, 'null', text.replace('"shares":{', '"shares":{"__proto__":1,')]);
        let quick: Position | undefined;
        try {
          quick = check(JSON.parse(text)) ?? undefined;
        } catch {
          quick = undefined;
        }
        const account = PositionBook.accountOf(Buffer.from(text));
        if (quick === undefined) {
          expect(account, text).toBeUndefined();
          continue;
        }
        accepted++;
        const expected = PositionBook.fromSnapshot(quick);
        expect(account, text).toEqual(expected);
        expect([...account!.shares.keys()]).toEqual([...expected.shares.keys()]);
      }
      // Both kinds are checked many times.
      expect(accepted).toBeGreaterThan(1_500);
      expect(accepted).toBeLessThan(4_000);
    });
  });
  describe('fills patched into a snapshot text', () => {
    const ORDINARY = ['VTI', 'IVE', 'IWS', 'BRK.B', 'A', 'AA', 'BA', 'ZZ9', 'Z', 'é', '', 'cash', 'fills', 'timestamp', 'constructor', 'a b'];
    /** Keys written with an escape, array indexes, `__proto__`, and a key that starts with a digit. */
    const ODD = ['a"b\\c', '"A', ',"A', '0', '10', '__proto__', '1A'];
    /**
     * Amounts below 10^12 micro-units (a million shares or dollars), so that no sum reaches 2^51
     * micro-units (2.25 billion), below which a number's text and its micro-units map one to one.
     */
    const amount = (rng: Random): number => {
      const digits = rng.pick([0, 1, 3, 6, 9, 12]);
      const micros = Math.floor(rng.next() * 10 ** digits);
      return (rng.next() < 0.5 ? -micros : micros) / 1e6;
    };
    const randomFill = (rng: Random, taxpayer: number, symbols: readonly string[], n: number): Fill => ({
      ...fill(taxpayer, rng.next() < 0.6 && symbols.length > 0 ? rng.pick(symbols) : rng.pick(rng.next() < 0.03 ? ODD : ORDINARY), amount(rng), amount(rng), n),
      timestamp: 1_700_000_000 + rng.int(-1_000, 1_000) + rng.pick([0, 0.5, 0.123456]),
    });

    it('gives exactly the text of the account decoded, the fill applied and encoded again', () => {
      const rng = new Random(91);
      let patched = 0;
      for (let n = 0; n < 5_000; n++) {
        const slow = new PositionBook();
        const taxpayer = rng.int(1, 2 ** 40);
        for (let i = rng.int(1, 8); i > 0; i--) slow.apply(randomFill(rng, taxpayer, [], n));
        let text = PositionBook.snapshotText(slow.account(taxpayer)!);
        for (let i = rng.int(1, 5); i > 0; i--) {
          const f = randomFill(rng, taxpayer, [...slow.account(taxpayer)!.shares.keys()], n);
          const account = PositionBook.accountOf(text)!;
          slow.accounts.set(taxpayer, account);
          slow.apply(f);
          const expected = PositionBook.snapshotText(slow.account(taxpayer)!);
          const fast = patchSnapshot(text, f);
          // Only keys written with an escape or starting with a digit (maybe array indexes) take the long way.
          if (fast === undefined) expect(/\\|[{,]"[0-9]/.test(`${text}${JSON.stringify({ [f.symbol]: 0 })}`) || f.symbol === '__proto__', `${text} ${f.symbol}`).toBe(true);
          else {
            expect(fast, `${text} + ${f.symbol}`).toBe(expected);
            patched++;
          }
          text = expected;
        }
      }
      // Most fills take the patch, new symbols too.
      expect(patched).toBeGreaterThan(10_000);
    });

    it('keeps the amounts of the other symbols as written, also where decoding them again would move them', () => {
      // Beyond 2^51 micro-units text → number → micro-units can be a micro-unit off: the long way moves IVE, the patch does not.
      const text = '{"taxpayer_id":7,"shares":{"IVE":-4340133578.124597,"VTI":1},"cash":0,"fills":1,"timestamp":1700000000}';
      const f = fill(7, 'VTI', 1, -10, 2);
      expect(patchSnapshot(text, f)).toBe('{"taxpayer_id":7,"shares":{"IVE":-4340133578.124597,"VTI":2},"cash":-10,"fills":2,"timestamp":1700000002}');
      const book = new PositionBook();
      book.accounts.set(7, PositionBook.accountOf(text)!);
      book.apply(f);
      expect(PositionBook.snapshotText(book.account(7)!)).toBe('{"taxpayer_id":7,"shares":{"IVE":-4340133578.124596,"VTI":2},"cash":-10,"fills":2,"timestamp":1700000002}');
    });

    it('a book holding an account as text gives the same snapshots as one that decodes it every time', () => {
      const rng = new Random(92);
      const patching = new PositionBook();
      const decoding = new PositionBook();
      for (let n = 0; n < 20_000; n++) {
        const taxpayer = rng.int(1, 40);
        const f = randomFill(rng, taxpayer, ['VTI', 'IVE', 'cash', 'a"b\\c'], n);
        patching.apply(f);
        decoding.apply(f);
        // The patching book keeps each snapshot as text; the other is handed the account decoded again.
        const text = patching.snapshotOf(taxpayer);
        expect(text).toBe(PositionBook.snapshotText(decoding.account(taxpayer)!));
        decoding.accounts.set(taxpayer, PositionBook.accountOf(text)!);
      }
      expect([...patching.accounts.values()].every((held) => 'text' in held)).toBe(true);
    });
  });
});
