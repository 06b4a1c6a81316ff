/**
 * Records as portfolio's store keeps them: their bytes as they came, with only what the store and
 * the events need decoded now (an account, a fill count or id). A record the schema takes as it is
 * is checked in place; anything else goes through the schema, whose reasons are logged.
 */
import { decodeMessage, Fill, isFillAsIs, isPositionAsIs, Position } from '@tradeflow/shared';

type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * A position snapshot as the store keeps it: its bytes, with its account and fill count. One the
 * schema takes as it is is checked in place (a snapshot holds every symbol of the account: copying
 * it was 7 % of the service's time); anything else goes through the schema, with its reasons.
 */
export function positionAsStored(bytes: Buffer | null): Decoded<Pick<Position, 'taxpayer_id' | 'fills'>> {
  if (bytes !== null && bytes.length > 0) {
    try {
      const json: unknown = JSON.parse(bytes.toString('utf8'));
      // Only what the store and the events need is kept: the parsed snapshot (every symbol of
      // the account) is garbage at once, not held with the rest of its fetch.
      if (isPositionAsIs(json)) return { ok: true, value: { taxpayer_id: json.taxpayer_id, fills: json.fills } };
    } catch {
      // not JSON: the schema says so below
    }
  }
  const checked = decodeMessage(Position, bytes);
  return checked.ok ? { ok: true, value: { taxpayer_id: checked.value.taxpayer_id, fills: checked.value.fills } } : checked;
}


/**
 * A fill as the store keeps it: its bytes, with its account and id (what the store and the events
 * need). One the schema takes as it is is checked in place, not copied field by field (the copy
 * and the objects it made were most of decoding a burst's fills).
 */
export function fillAsStored(bytes: Buffer | null): Decoded<Pick<Fill, 'taxpayer_id' | 'fill_id'>> {
  if (bytes !== null && bytes.length > 0) {
    try {
      const json: unknown = JSON.parse(bytes.toString('utf8'));
      if (isFillAsIs(json)) return { ok: true, value: { taxpayer_id: json.taxpayer_id, fill_id: json.fill_id } };
    } catch {
      // not JSON: the schema says so below
    }
  }
  const checked = decodeMessage(Fill, bytes);
  return checked.ok ? { ok: true, value: { taxpayer_id: checked.value.taxpayer_id, fill_id: checked.value.fill_id } } : checked;
}
