/**
 * One of reconcile's worker threads: reads its share of the fills partitions (readFillRanges) and
 * posts progress ({ read }) now and then and the reading at the end ({ reading }).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createKafka, createLogger, kafkaEnv, parseEnv } from '@tradeflow/shared';
import { fillSource, readFillRanges, type PartitionRange, type Window } from './reconcile-read.ts';
import type { StoredFill } from './reconcile.ts';

interface Task {
  readonly ranges: readonly PartitionRange[];
  readonly window: Window;
  readonly stored: readonly StoredFill[] | undefined;
  readonly fetchBytes: number;
  readonly reader: 'wire' | 'kafkajs';
  readonly logLevel: string;
  readonly index: number;
}

const task = workerData as Task;
// A worker's environment is a copy of the main thread's.
const env = parseEnv(kafkaEnv);
const source = fillSource(task.reader, env, () => createKafka(env, `reconcile-${task.index}`, createLogger('reconcile', task.logLevel)), task.fetchBytes);
const reading = await readFillRanges(source, task.ranges, task.window, task.stored, (read) => parentPort!.postMessage({ read }));
parentPort!.postMessage({ reading });
