/** Kafka → an external store, at least once: offsets are committed after the store acknowledged (see index.ts). */
import { defaultPartitioner, type Producer } from '../kafka.ts';
import { countBatch, mergeBatches, openOnce, startConsumer, type BatchContext } from './lanes.ts';
import type { RunningConsumer, SinkOptions } from './options.ts';
import { produceChunks, type TopicPartition } from './records.ts';
import { retrying } from './retry.ts';

/** Kafka → external store, offsets committed after the store acknowledged (see the file comment). */
export async function runSink(options: SinkOptions): Promise<RunningConsumer> {
  /** For what the write returns to produce; opened on first use (a failed opening is tried again). */
  const producers = new Map<'out', Promise<Producer>>();
  const producerOnce = () =>
    openOnce(producers, 'out', async () => {
      const p = options.kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: defaultPartitioner });
      await p.connect();
      return p;
    });
  const processLane = async (entries: readonly BatchContext[], isStopping: () => boolean): Promise<void> => {
    const ctx = mergeBatches(entries);
    await retrying('write', ctx, options, isStopping, async () => {
      const produce = (await options.write(ctx.records, ctx.source)) ?? [];
      if (produce.length === 0) return;
      const p = await producerOnce();
      for (const chunk of produceChunks(produce)) await p.sendBatch({ acks: -1, topicMessages: chunk });
      countBatch(options.metrics, 0, produce);
    });
    options.metrics.consumed += ctx.records.length;
    await retrying('offset commit', ctx, options, isStopping, () =>
      ctx.control.commitOffsets([{ topic: ctx.source.topic, partitions: [{ partition: ctx.source.partition, offset: ctx.nextOffset }] }]),
    );
  };
  const onAssignment = async (assigned: readonly TopicPartition[]) => {
    options.metrics.keepLagOnly(new Set(assigned.map((tp) => `${tp.topic}-${tp.partition}`)));
  };
  const onStop = async () => {
    for (const producer of producers.values()) await (await producer.catch(() => undefined))?.disconnect().catch(() => undefined);
  };
  // A write is not a transaction: it takes what is queued (transactionStreamMs is for the exactly-once runners).
  // It commits the group's offsets itself, so the Kafka client's consumer fetches.
  return startConsumer({ ...options, transactionStreamMs: 0, fetcher: 'consumer' }, (tp) => `${tp.topic}-${tp.partition}`, processLane, onAssignment, onStop);
}
