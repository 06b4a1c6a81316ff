/** One status line per service from its /metrics, with rates over the last interval. */
import type { MetricsSnapshot } from '@tradeflow/shared';

const n = (x: number) => Math.round(x).toLocaleString('en-US');

export function statusLine(now: MetricsSnapshot, before: MetricsSnapshot | undefined, seconds: number): string {
  const rate = (pick: (m: MetricsSnapshot) => number) => (before === undefined || seconds <= 0 ? 0 : (pick(now) - pick(before)) / seconds);
  const parts = [
    now.service.padEnd(18),
    `consumed ${n(rate((m) => m.consumed)).padStart(7)}/s`,
    now.written > 0 || now.produced === 0 ? `written ${n(rate((m) => m.written)).padStart(7)}/s` : `produced ${n(rate((m) => m.produced)).padStart(7)}/s`,
    `lag ${n(now.lag).padStart(7)}`,
    `dlq ${n(now.dlq).padStart(5)}`,
    `total ${n(now.consumed).padStart(10)}`,
    `rss ${n(now.rssBytes / 1_048_576).padStart(4)} MB`,
  ];
  if (now.rejected > 0) parts.push(`rejected ${n(now.rejected)}`);
  if (!now.healthy) parts.push('RETRYING');
  return parts.join('  ');
}
