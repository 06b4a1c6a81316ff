import { LOOP_SAMPLE_MS, TIMING_WINDOW, type MemoryPeaks, type TimingSummary } from '@tradeflow/shared';
/** Benchmark figures: each is echoed as it is measured, and all are printed as a table at the end. */
export class Report {
  private readonly rows: [string, string, string][] = [];

  add(what: string, figure: string, note = ''): void {
    this.rows.push([what, figure, note]);
    process.stderr.write(`  ${what}: ${figure} ${note}\n`);
  }

  print(): void {
    const width = Math.max(...this.rows.map((r) => r[0].length));
    const figureWidth = Math.max(...this.rows.map((r) => r[1].length));
    process.stdout.write(`\n| ${'measure'.padEnd(width)} | ${'figure'.padEnd(figureWidth)} | note\n|${'-'.repeat(width + 2)}|${'-'.repeat(figureWidth + 2)}|------\n`);
    for (const [what, figure, note] of this.rows) process.stdout.write(`| ${what.padEnd(width)} | ${figure.padEnd(figureWidth)} | ${note}\n`);
  }
}

export const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
export const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(0)} MB`;

type Memory = { readonly peakRssBytes: number; readonly memoryPeaks: MemoryPeaks };

/**
 * A service's peak RSS as a figure and what it is made of as its note: the part that is its own
 * (the rest: mapped files), the peaks of its heap (used, reserved) and of what it holds outside it.
 */
export const peakMemory = (m: Memory): [string, string] => {
  const p = m.memoryPeaks;
  return [mb(m.peakRssBytes), `its own ${mb(p.anonymousRssBytes)} (the rest mapped files); heap used ${mb(p.heapUsedBytes)} of ${mb(p.heapTotalBytes)}, outside the heap ${mb(p.externalBytes)} (buffers ${mb(p.arrayBuffersBytes)})`];
};

/** peakMemory as one phrase. */
export const memoryPeaks = (m: Memory) => {
  const [figure, note] = peakMemory(m);
  return `peak RSS ${figure} (${note})`;
};

/** A service's event loop delay ('loop.delay' in its /metrics timings: a timer's lateness) as a figure and its note. */
export const loopDelay = (delay: TimingSummary): [string, string] => [
  `p50 ${delay.p50Ms.toFixed(1)} / p99 ${delay.p99Ms.toFixed(1)} / max ${delay.maxMs.toFixed(0)} ms`,
  `how late a ${LOOP_SAMPLE_MS} ms timer ran, over the last ${fmt((Math.min(delay.count, TIMING_WINDOW) * LOOP_SAMPLE_MS) / 1000)} s`,
];
