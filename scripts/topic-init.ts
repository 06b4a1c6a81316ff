/**
 * Creates every topic of the system from the shared definitions (TOPIC_PARTITIONS partitions,
 * compaction for positions). Idempotent; exits non-zero, naming the topics, when co-partitioned
 * topics disagree on their partition count.
 */
import { createKafka, createLogger, ensureTopics, kafkaEnv, parseEnv, topicDefinitions, untilSuccess } from '@tradeflow/shared';

const logger = createLogger('topic-init');
try {
  const env = parseEnv(kafkaEnv);
  const kafka = createKafka(env, 'topic-init', logger);
  await untilSuccess('creating topics', logger, () => ensureTopics(kafka, topicDefinitions(env.TOPIC_PARTITIONS), logger));
  logger.info({ partitions: env.TOPIC_PARTITIONS }, 'topics ready');
} catch (error) {
  process.stderr.write(`topic-init: ${(error as Error).message}\n`);
  process.exit(1);
}
