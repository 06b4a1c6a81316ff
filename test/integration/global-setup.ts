/**
 * Finds the Kafka broker and InfluxDB the integration suite runs against, in this order:
 *   1. KAFKA_BROKERS and INFLUX_URL from the environment (nothing is started or stopped);
 *   2. containers (apache/kafka at the pinned version, influxdb:1.11) when a Docker engine answers;
 *   3. a real broker and InfluxDB started by scripts/infra on this machine (what CI uses).
 * The suite never skips for want of infrastructure: if none can be had, setup fails.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { INFLUX_TEST_PORT, KAFKA_TEST_PORT, parseCredentials, REPO, runInfraScript, type InfluxCredentials, type InfraMode } from './infra.ts';

const exec = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string;
    influxUrl: string;
    infraMode: InfraMode;
    influxCredentials: InfluxCredentials;
  }
}

function pinnedKafkaVersion(): string {
  const match = /^KAFKA_VERSION=(\S+)$/m.exec(readFileSync(`${REPO}/scripts/infra/versions.sh`, 'utf8'));
  if (match === null) throw new Error('KAFKA_VERSION missing from scripts/infra/versions.sh');
  return match[1]!;
}

async function dockerAnswers(): Promise<boolean> {
  try {
    await exec('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

async function startContainers(project: TestProject): Promise<() => Promise<void>> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const version = pinnedKafkaVersion();
  const hostPort = KAFKA_TEST_PORT;
  const kafka = await new GenericContainer(`apache/kafka:${version}`)
    .withExposedPorts({ container: 9094, host: hostPort })
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_LISTENERS: 'PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:9094',
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://localhost:9092,EXTERNAL://127.0.0.1:${hostPort}`,
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT',
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_INTER_BROKER_LISTENER_NAME: 'PLAINTEXT',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
    })
    .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
    .start();
  const credentials: InfluxCredentials = { adminUser: 'admin', adminPassword: 'test-admin-password', username: 'tradeflow', password: 'test-password' };
  const influx = await new GenericContainer('influxdb:1.11.8')
    .withExposedPorts(8086)
    .withEnvironment({
      INFLUXDB_REPORTING_DISABLED: 'true',
      INFLUXDB_HTTP_LOG_ENABLED: 'false',
      INFLUXDB_HTTP_AUTH_ENABLED: 'true',
      INFLUXDB_DB: 'tradeflow',
      INFLUXDB_ADMIN_USER: credentials.adminUser,
      INFLUXDB_ADMIN_PASSWORD: credentials.adminPassword,
      INFLUXDB_USER: credentials.username,
      INFLUXDB_USER_PASSWORD: credentials.password,
    })
    .withWaitStrategy(Wait.forHttp('/ping', 8086).forStatusCode(204))
    .start();
  project.provide('kafkaBrokers', `127.0.0.1:${hostPort}`);
  project.provide('influxUrl', `http://${influx.getHost()}:${influx.getMappedPort(8086)}`);
  project.provide('infraMode', 'containers');
  project.provide('influxCredentials', credentials);
  return async () => {
    await Promise.all([kafka.stop(), influx.stop()]);
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // fill-publisher's position stores of an earlier run (see helpers.ts STATE_DIR).
  rmSync(`${REPO}/.local/integration-state`, { recursive: true, force: true });
  const brokers = process.env['KAFKA_BROKERS'];
  const influxUrl = process.env['INFLUX_URL'];
  if (brokers !== undefined && brokers !== '' && influxUrl !== undefined && influxUrl !== '') {
    process.stderr.write(`[integration] using KAFKA_BROKERS=${brokers} and INFLUX_URL=${influxUrl} from the environment\n`);
    project.provide('kafkaBrokers', brokers);
    project.provide('influxUrl', influxUrl);
    project.provide('infraMode', 'env');
    const env = (name: string) => process.env[name] ?? '';
    project.provide('influxCredentials', { adminUser: env('INFLUX_ADMIN_USER'), adminPassword: env('INFLUX_ADMIN_PASSWORD'), username: env('INFLUX_USERNAME'), password: env('INFLUX_PASSWORD') });
    return async () => undefined;
  }
  if (await dockerAnswers()) {
    process.stderr.write('[integration] a Docker engine answers: starting Kafka and InfluxDB containers\n');
    return startContainers(project);
  }
  process.stderr.write(
    `[integration] no KAFKA_BROKERS/INFLUX_URL and no Docker engine: starting a local broker on 127.0.0.1:${KAFKA_TEST_PORT} and InfluxDB on 127.0.0.1:${INFLUX_TEST_PORT}\n`,
  );
  await Promise.all([runInfraScript('kafka', 'start'), runInfraScript('influx', 'start')]);
  project.provide('kafkaBrokers', `127.0.0.1:${KAFKA_TEST_PORT}`);
  project.provide('influxUrl', `http://127.0.0.1:${INFLUX_TEST_PORT}`);
  project.provide('infraMode', 'local');
  project.provide('influxCredentials', parseCredentials(readFileSync(await runInfraScript('influx', 'credentials'), 'utf8')));
  return async () => {
    await Promise.all([runInfraScript('kafka', 'stop'), runInfraScript('influx', 'stop')]);
  };
}
