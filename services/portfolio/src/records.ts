/**
 * Records as portfolio's store keeps them: their bytes as they came, with only what the store and
 * the events need decoded now (an account, a fill count or id). A record the schema takes as it is
 * is checked in place; anything else goes through the schema, whose reasons are logged.
 */
import { decodeMessage, Fill, isFillAsIs, isPositionAsIs, Position } from '@tradeflow/shared';

type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * What the store keeps of a record: its bytes, and `keep` of its value. A value the fast path would
 * answer (`asIs`) is checked in place, not copied (a position holds every symbol of its account:
 * copying it was 7 % of the service's time); anything else goes through the schema, with its reasons.
 */
function asStored<T, K>(bytes: Buffer | null, asIs: (json: unknown) => json is T, schema: typeof Position | typeof Fill, keep: (value: T) => K): Decoded<K> {
  if (bytes !== null && bytes.length > 0) {
    try {
      const json: unknown = JSON.parse(bytes.toString('utf8'));
      // Only what is kept stays alive: the parsed value is garbage at once, not held with the rest of its fetch.
      if (asIs(json)) return { ok: true, value: keep(json) };
    } catch {
      // not JSON: the schema says so below
    }
  }
  const checked = decodeMessage(schema, bytes);
  return checked.ok ? { ok: true, value: keep(checked.value as T) } : checked;
}

/** A position snapshot as the store keeps it: its bytes, with its account and fill count. */
export const positionAsStored = (bytes: Buffer | null): Decoded<Pick<Position, 'taxpayer_id' | 'fills'>> =>
  asStored(bytes, isPositionAsIs, Position, (p: Pick<Position, 'taxpayer_id' | 'fills'>) => ({ taxpayer_id: p.taxpayer_id, fills: p.fills }));

/**
 * A fill as the store keeps it: its bytes, with its account and id (what the store and the events
 * need; the fast path's copy and the objects it made were most of decoding a burst's fills).
 */
export const fillAsStored = (bytes: Buffer | null): Decoded<Pick<Fill, 'taxpayer_id' | 'fill_id'>> =>
  asStored(bytes, isFillAsIs, Fill, (f: Fill) => ({ taxpayer_id: f.taxpayer_id, fill_id: f.fill_id }));
