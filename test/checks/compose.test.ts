/**
 * Checks that run without a Docker engine: the compose file parses and agrees with the code, and
 * the dashboards are valid and reference only the provisioned datasource.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { influxEnv, kafkaEnv, serviceEnv } from '@tradeflow/shared';
import { REPO } from '../../scripts/lib/processes.ts';
import { SERVICE_MALLOC_ENV } from '../../scripts/lib/node-options.ts';
import { loadDashboards, panelQueries, provisionedDatasourceUid } from './dashboards.ts';

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: unknown;
  profiles?: string[];
}
const compose = parse(readFileSync(`${REPO}/docker-compose.yml`, 'utf8'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;
const SERVICE_NAMES = readdirSync(`${REPO}/services`).sort();

describe('docker-compose.yml', () => {
  it('runs every service of services/ from the project image, after topic init', () => {
    for (const name of SERVICE_NAMES) {
      const service = services[name];
      expect(service, name).toBeDefined();
      expect(service!.command).toEqual([`services/${name}/src/main.ts`]);
      expect(service!.depends_on?.['topic-init']?.condition).toBe('service_completed_successfully');
    }
    expect(services['topic-init']!.command).toEqual(['scripts/topic-init.ts']);
    expect(services['topic-init']!.depends_on?.['kafka']?.condition).toBe('service_healthy');
  });

  it('gives every Kafka client the broker address inside the compose network', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.build === undefined || name === 'check-settings') continue;
      expect(service.environment?.['KAFKA_BROKERS'], name).toBe('kafka:9092');
    }
    expect(services['influx-writer']!.environment).toMatchObject({ INFLUX_URL: 'http://influxdb:8086' });
  });

  it('sets only environment variables the services read', () => {
    // NODE_OPTIONS is Node's own (the heap bounds: scripts/lib/node-options.ts).
    const shared = new Set([...Object.keys(kafkaEnv), ...Object.keys(influxEnv), ...Object.keys(serviceEnv), 'NODE_OPTIONS']);
    for (const name of SERVICE_NAMES) {
      const main = readFileSync(`${REPO}/services/${name}/src/main.ts`, 'utf8');
      for (const variable of Object.keys(services[name]!.environment ?? {})) {
        expect(shared.has(variable) || main.includes(`${variable}:`), `${name}: ${variable}`).toBe(true);
      }
    }
  });

  it('pins every image tag and runs the Kafka version the tests run', () => {
    const version = /^KAFKA_VERSION=(\S+)$/m.exec(readFileSync(`${REPO}/scripts/infra/versions.sh`, 'utf8'))![1];
    for (const [name, service] of Object.entries(services)) {
      if (service.image === undefined || service.build !== undefined) continue;
      expect(service.image, name).toMatch(/^[^:]+:[0-9v][\w.-]*$/);
    }
    expect(services['kafka']!.image).toBe(`apache/kafka:${version}`);
  });

  it('binds host ports to 127.0.0.1 and names the Kafka UI cluster kafka_development', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) expect(port, name).toMatch(/^127\.0\.0\.1:/);
    }
    expect(services['kafka-ui']!.environment).toMatchObject({ KAFKA_CLUSTERS_0_NAME: 'kafka_development' });
  });

  it('builds the image with the package.json of every service', () => {
    const dockerfile = readFileSync(`${REPO}/Dockerfile`, 'utf8');
    for (const name of SERVICE_NAMES) expect(dockerfile).toContain(`COPY services/${name}/package.json`);
  });

  it("gives the services in the image the allocator's settings run-local and the tests give them", () => {
    const dockerfile = readFileSync(`${REPO}/Dockerfile`, 'utf8');
    const env = dockerfile.split('\n').filter((line) => line.startsWith('ENV ')).join(' ');
    for (const [name, value] of Object.entries(SERVICE_MALLOC_ENV)) expect(env, name).toContain(` ${name}=${value}`);
  });
});

describe('grafana dashboards', () => {
  it('are valid, with unique uids and unique panel ids', () => {
    const dashboards = loadDashboards();
    expect(dashboards.map((d) => d.title)).toEqual(['Firm', 'Order Flow']);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
    for (const d of dashboards) expect(new Set(d.panels.map((p) => p.id)).size, d.title).toBe(d.panels.length);
  });

  it('reference only the provisioned InfluxDB datasource, by uid', () => {
    const uid = provisionedDatasourceUid();
    for (const d of loadDashboards()) {
      for (const p of d.panels) {
        expect(p.datasource?.uid, `${d.title}: ${p.title}`).toBe(uid);
        for (const t of p.targets ?? []) expect(t.datasource?.uid).toBe(uid);
      }
      for (const v of d.templating.list) expect(v.datasource?.uid).toBe(uid);
    }
    expect(panelQueries().length).toBeGreaterThan(10);
  });
});
