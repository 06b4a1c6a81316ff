/** Topic administration for tests, benchmarks and local runs. */
import { ensureTopics, topicDefinitions, TOPICS, type Kafka, type Logger } from '@tradeflow/shared';
import { waitFor } from './processes.ts';

/** Deletes every topic of the system and creates them again, empty. */
export async function resetTopics(kafka: Kafka, logger: Logger, partitions = 6): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names: string[] = Object.values(TOPICS);
    const existing = (await admin.listTopics()).filter((t) => names.includes(t));
    if (existing.length > 0) await admin.deleteTopics({ topics: existing, timeout: 30_000 });
    await waitFor('topic deletion', async () => ((await admin.listTopics()).some((t) => names.includes(t)) ? undefined : true), 60_000);
  } finally {
    await admin.disconnect();
  }
  await waitFor('topic creation', async () => {
    await ensureTopics(kafka, topicDefinitions(partitions), logger);
    return true;
  });
}

/** Sum over partitions of (high watermark) for a topic: how many records it holds (with no deletions). */
export async function topicEndOffsets(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, p) => sum + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}
