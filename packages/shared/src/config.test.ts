import { describe, expect, it } from 'vitest';
import { ConfigError, influxEnv, kafkaEnv, parseEnv, serviceEnv } from './config.ts';

describe('parseEnv', () => {
  it('applies defaults', () => {
    const env = parseEnv({ ...kafkaEnv, ...influxEnv, ...serviceEnv }, {});
    expect(env.KAFKA_BROKERS).toEqual(['127.0.0.1:9092']);
    expect(env.TOPIC_PARTITIONS).toBe(6);
    expect(env.INFLUX_URL).toBe('http://127.0.0.1:8086');
    expect(env.KAFKA_SSL).toBe(false);
    expect(env.FETCH_MAX_BYTES).toBe(16 * 1024 * 1024);
    expect(env.FETCH_MAX_PARTITION_BYTES).toBe(2 * 1024 * 1024);
  });

  it('takes fetch sizes in bytes and refuses a fetch too small to hold a batch', () => {
    expect(parseEnv(serviceEnv, { FETCH_MAX_BYTES: '1048576', FETCH_MAX_PARTITION_BYTES: '262144' })).toMatchObject({ FETCH_MAX_BYTES: 1_048_576, FETCH_MAX_PARTITION_BYTES: 262_144 });
    expect(() => parseEnv(serviceEnv, { FETCH_MAX_PARTITION_BYTES: '100' })).toThrow(/FETCH_MAX_PARTITION_BYTES="100"/);
  });

  it('takes one transactional producer per slot or per instance, and names anything else', () => {
    expect(parseEnv(serviceEnv, {}).TRANSACTIONAL_PRODUCER).toBe('instance');
    expect(parseEnv(serviceEnv, { TRANSACTIONAL_PRODUCER: 'slot' }).TRANSACTIONAL_PRODUCER).toBe('slot');
    expect(() => parseEnv(serviceEnv, { TRANSACTIONAL_PRODUCER: 'member' })).toThrow('  TRANSACTIONAL_PRODUCER="member": must be slot or instance');
  });

  it('reads with the lean reader unless told to use the Kafka client, and names anything else', () => {
    expect(parseEnv(kafkaEnv, {})).toMatchObject({ KAFKA_RESTORE_READER: 'wire', KAFKA_VIEW_READER: 'wire', KAFKA_STAGE_READER: 'wire' });
    expect(parseEnv(kafkaEnv, { KAFKA_STAGE_PRODUCER: 'wire' }).KAFKA_STAGE_PRODUCER).toBe('wire');
    expect(() => parseEnv(kafkaEnv, { KAFKA_STAGE_PRODUCER: 'kafkajs' })).toThrow(`  KAFKA_STAGE_PRODUCER="kafkajs": must be wire: exactly-once stages produce with the lean transactional producer (with SASL too); the Kafka client's is no longer offered`);
    expect(parseEnv(kafkaEnv, { KAFKA_STAGE_READER: 'kafkajs' }).KAFKA_STAGE_READER).toBe('kafkajs');
    expect(() => parseEnv(kafkaEnv, { KAFKA_STAGE_READER: 'librdkafka' })).toThrow('  KAFKA_STAGE_READER="librdkafka": must be wire or kafkajs');
    expect(parseEnv(kafkaEnv, { KAFKA_VIEW_READER: 'kafkajs' }).KAFKA_VIEW_READER).toBe('kafkajs');
    expect(() => parseEnv(kafkaEnv, { KAFKA_VIEW_READER: 'rdkafka' })).toThrow('  KAFKA_VIEW_READER="rdkafka": must be wire or kafkajs');
    expect(() => parseEnv(kafkaEnv, { KAFKA_RESTORE_READER: 'java' })).toThrow('  KAFKA_RESTORE_READER="java": must be wire or kafkajs');
  });

  it('parses lists, numbers and booleans', () => {
    const env = parseEnv(kafkaEnv, { KAFKA_BROKERS: 'a:1, b:2', TOPIC_PARTITIONS: '12', KAFKA_SSL: 'true' });
    expect(env.KAFKA_BROKERS).toEqual(['a:1', 'b:2']);
    expect(env.TOPIC_PARTITIONS).toBe(12);
    expect(env.KAFKA_SSL).toBe(true);
  });

  it('names each bad variable, its value and what is expected, and hides secrets', () => {
    const call = () =>
      parseEnv({ ...kafkaEnv, ...influxEnv }, { KAFKA_BROKERS: 'localhost', TOPIC_PARTITIONS: 'six', INFLUX_URL: 'nope', KAFKA_SASL_MECHANISM: 'oauth', KAFKA_SASL_PASSWORD: 'x' });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(
      'invalid configuration, fix these environment variables:\n' +
        '  KAFKA_BROKERS="localhost": must be host:port\n' +
        '  KAFKA_SASL_MECHANISM="oauth": must be plain, scram-sha-256 or scram-sha-512\n' +
        '  TOPIC_PARTITIONS="six": must be a whole number\n' +
        '  INFLUX_URL="nope": must be a URL such as http://127.0.0.1:8086',
    );
  });
});
