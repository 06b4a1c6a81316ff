/**
 * CPU use over a stretch of time, from /proc (Linux): how busy the whole machine was and how much
 * of one core each named process took. Elsewhere `stop()` returns undefined.
 */
import { readdirSync, readFileSync } from 'node:fs';

interface Sample {
  readonly at: number;
  /** Jiffies the machine spent busy and in total, over all cores. */
  readonly busy: number;
  readonly total: number;
  /** utime + stime of each process, in jiffies. */
  readonly processes: Map<string, number>;
}

export interface CpuUse {
  /** Share of all cores busy, 0-100. */
  readonly machineBusyPct: number;
  /** Per process: percent of one core. */
  readonly processPct: Map<string, number>;
  /** CPU seconds the whole machine spent busy (all cores, every process). */
  readonly machineBusySeconds: number;
}

/** Jiffies per second; 100 on every Linux this runs on (getconf CLK_TCK). */
const HZ = 100;

function sample(pids: ReadonlyMap<string, number>): Sample | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    const processes = new Map<string, number>();
    for (const [name, pid] of pids) {
      try {
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        processes.set(name, Number(fields[11]) + Number(fields[12]));
      } catch {
        // The process has gone: leave it out.
      }
    }
    return { at: performance.now(), busy: total - idle, total, processes };
  } catch {
    return undefined;
  }
}

/** The pid of the first process whose command line contains `needle`, if any (Linux). */
export function findPid(needle: string): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) return Number(entry);
    } catch {
      // Gone, or not ours to read.
    }
  }
  return undefined;
}

/** Starts measuring; `stop()` gives the CPU use since. */
export function measureCpu(pids: ReadonlyMap<string, number>): { stop(): CpuUse | undefined } {
  const start = sample(pids);
  return {
    stop() {
      const end = sample(pids);
      if (start === undefined || end === undefined || end.total === start.total) return undefined;
      const seconds = (end.at - start.at) / 1000;
      const processPct = new Map<string, number>();
      for (const [name, jiffies] of end.processes) {
        const before = start.processes.get(name);
        if (before !== undefined) processPct.set(name, ((jiffies - before) / HZ / seconds) * 100);
      }
      return { machineBusyPct: ((end.busy - start.busy) / (end.total - start.total)) * 100, processPct, machineBusySeconds: (end.busy - start.busy) / HZ };
    },
  };
}
