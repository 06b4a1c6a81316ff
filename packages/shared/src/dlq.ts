/** Dead-letter records: the original bytes and key, with the reason and the source in headers. */
import type { ConsumedRecord, ProducedRecord } from './runner/index.ts';

export const DLQ_HEADERS = {
  error: 'dlq.error',
  service: 'dlq.service',
  sourceTopic: 'dlq.source.topic',
  sourcePartition: 'dlq.source.partition',
  sourceOffset: 'dlq.source.offset',
  sourceTimestamp: 'dlq.source.timestamp',
} as const;

/** Headers stay readable in Kafka UI; a reason longer than this is cut. */
const MAX_REASON_LENGTH = 2_000;

export function deadLetter(record: ConsumedRecord, dlqTopic: string, reason: string, service: string): ProducedRecord {
  const headers: Record<string, string | Buffer> = {};
  for (const [name, value] of Object.entries(record.headers)) {
    if (typeof value === 'string' || Buffer.isBuffer(value)) headers[name] = value;
  }
  headers[DLQ_HEADERS.error] = reason.length > MAX_REASON_LENGTH ? `${reason.slice(0, MAX_REASON_LENGTH)}…` : reason;
  headers[DLQ_HEADERS.service] = service;
  headers[DLQ_HEADERS.sourceTopic] = record.topic;
  headers[DLQ_HEADERS.sourcePartition] = String(record.partition);
  headers[DLQ_HEADERS.sourceOffset] = record.offset;
  headers[DLQ_HEADERS.sourceTimestamp] = record.timestamp;
  return { topic: dlqTopic, key: record.key, value: record.value ?? Buffer.alloc(0), headers };
}
