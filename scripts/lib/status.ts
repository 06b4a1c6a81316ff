/** The status view of a local run: a line per process, with its service's rates from /metrics. */
import type { MetricsSnapshot } from '@tradeflow/shared';
import type { Supervised } from './supervisor.ts';

const n = (x: number) => Math.round(x).toLocaleString('en-US');

/** Rates and counters of one service, over the last interval. */
export function statusLine(now: MetricsSnapshot, before: MetricsSnapshot | undefined, seconds: number): string {
  const rate = (pick: (m: MetricsSnapshot) => number) => (before === undefined || seconds <= 0 ? 0 : (pick(now) - pick(before)) / seconds);
  const parts = [
    `consumed ${n(rate((m) => m.consumed)).padStart(7)}/s`,
    now.written > 0 || now.produced === 0 ? `written ${n(rate((m) => m.written)).padStart(7)}/s` : `produced ${n(rate((m) => m.produced)).padStart(7)}/s`,
    `lag ${n(now.lag).padStart(7)}`,
    `dlq ${n(now.dlq).padStart(5)}`,
    `total ${n(now.consumed).padStart(10)}`,
    `rss ${n(now.rssBytes / 1_048_576).padStart(4)} MB`,
  ];
  if (now.rejected > 0) parts.push(`rejected ${n(now.rejected)}`);
  if (!now.healthy) parts.push('WAITING (see its log)');
  return parts.join('  ');
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line per process: state, pid and uptime, restarts and the last exit, then its metrics. */
export function statusBlock(
  processes: readonly Supervised[],
  current: ReadonlyMap<string, MetricsSnapshot>,
  previous: ReadonlyMap<string, MetricsSnapshot>,
  seconds: number,
  now: Date,
): string[] {
  return processes.map((p) => {
    const name = p.definition.name;
    const state =
      p.state === 'running'
        ? `up ${duration(now.getTime() - p.since.getTime())} pid ${p.pid}`
        : p.state === 'waiting to restart'
          ? `RESTARTING in ${duration((p.restartAt?.getTime() ?? now.getTime()) - now.getTime())}`
          : p.state === 'exited'
            ? 'EXITED'
            : 'stopped';
    const exit = p.lastExit === undefined ? '' : `  last exit ${p.lastExit.signal ?? `code ${p.lastExit.code}`} at ${p.lastExit.at.toISOString().slice(11, 19)}`;
    const supervision = `${state.padEnd(22)} restarts ${String(p.restarts).padStart(2)}${exit}`;
    const metrics = current.get(name);
    const detail = metrics !== undefined ? statusLine(metrics, previous.get(name), seconds) : p.definition.metricsPort !== undefined && p.state === 'running' ? 'starting (no /metrics yet)' : '';
    return `${name.padEnd(18)} ${supervision}${detail === '' ? '' : `  ${detail}`}`;
  });
}
