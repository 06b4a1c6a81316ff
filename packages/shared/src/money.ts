/**
 * Exact arithmetic for money and shares: amounts, prices and shares travel as JSON numbers with at
 * most six decimals and are computed on as integer micro-units (bigint), so sums never drift.
 */

export const MICRO = 1_000_000n;

/** Micro-units of a decimal number with at most six decimals (rounded to the nearest micro-unit). */
export function toMicros(value: number): bigint {
  return BigInt(Math.round(value * 1e6));
}

/** The number whose shortest decimal form is exactly micros / 10^6. */
export function fromMicros(micros: bigint): number {
  return Number(micros) / 1e6;
}

/** floor(a / b) for b > 0, also for negative a. */
export function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** a / b rounded to the nearest integer, halves away from zero, for b > 0. */
export function roundDiv(a: bigint, b: bigint): bigint {
  const sign = a < 0n ? -1n : 1n;
  const abs = a < 0n ? -a : a;
  return sign * ((abs * 2n + b) / (2n * b));
}

/** Shares bought with `amount` at `price`, rounded down to six decimals (micro-shares). */
export function sharesFor(amountMicros: bigint, priceMicros: bigint): bigint {
  return floorDiv(amountMicros * MICRO, priceMicros);
}

/** Cash value of `shares` at `price` in micro-dollars, rounded to the nearest micro-dollar. */
export function valueOf(sharesMicros: bigint, priceMicros: bigint): bigint {
  return roundDiv(sharesMicros * priceMicros, MICRO);
}

/**
 * Splits `totalMicros` by `weights` so that the parts sum exactly to the total: the weights are
 * taken to nine decimals and normalized by their sum, each part is rounded down, then the micro-units left over go one each to the parts with the
 * largest remainders (ties to the earlier part).
 */
export function splitByWeights(totalMicros: bigint, weights: readonly number[]): bigint[] {
  const scaled = weights.map((w) => BigInt(Math.round(w * 1e9)));
  const scaledSum = scaled.reduce((a, b) => a + b, 0n);
  const exact = scaled.map((w) => totalMicros * w);
  const parts = exact.map((e) => e / scaledSum);
  let left = totalMicros - parts.reduce((a, b) => a + b, 0n);
  const order = exact
    .map((e, i) => ({ i, remainder: e % scaledSum }))
    .sort((a, b) => (a.remainder === b.remainder ? a.i - b.i : a.remainder > b.remainder ? -1 : 1));
  for (const { i } of order) {
    if (left <= 0n) break;
    parts[i]! += 1n;
    left -= 1n;
  }
  return parts;
}
