/**
 * After a run of the whole pipeline on the real broker and InfluxDB, every panel query of every
 * provisioned dashboard — with Grafana's macros substituted — runs without error and returns rows.
 */
import type { InfluxClient } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { panelQueries, substituteMacros } from '../checks/dashboards.ts';
import { countPoints, influxDatabase, resetTopics, runScript, sleep, startService, stopAllServices, testKafka, uniqueName, waitFor } from './helpers.ts';

const database = uniqueName('dashboards');
let influx: InfluxClient;

beforeAll(async () => {
  influx = await influxDatabase(database);
  await resetTopics(testKafka());
  const group = uniqueName('it');
  await startService('tick-deserializer', { GROUP_ID: `${group}-d` });
  await startService('influx-writer', { GROUP_ID: `${group}-w`, INFLUX_DB: database });
  await startService('order-matcher', { GROUP_ID: `${group}-m` });
  await startService('fill-publisher', { GROUP_ID: `${group}-f` });
  const ticks = runScript('queue-ticks.ts', ['--count', '8000', '--rate', '1500', '--invalid', '20', '--seed', '9', '--quiet']);
  await sleep(1_500);
  const orders = runScript('queue-orders.ts', ['--count', '300', '--rate', '100', '--invalid', '5', '--seed', '9', '--quiet']);
  await Promise.all([ticks, orders]);
  await waitFor(
    'fills, orders and dead letters in InfluxDB',
    async () => {
      const [fills, portfolioOrders, deadLetters] = await Promise.all([
        countPoints(influx, 'fills', 'filled_shares'),
        countPoints(influx, 'portfolio_orders', 'amount'),
        countPoints(influx, 'dead_letters', 'count'),
      ]);
      return fills >= 300 && portfolioOrders >= 295 && deadLetters >= 25 ? true : undefined;
    },
    120_000,
  );
});

afterAll(async () => {
  await stopAllServices();
});

describe('dashboards', () => {
  const queries = panelQueries();

  it.each(queries.map((q) => [`${q.dashboard}: ${q.panel}`, q.query]))('%s returns rows', async (_name, query) => {
    const series = await influx.query(substituteMacros(query, 'IVE'));
    expect(series.length).toBeGreaterThan(0);
    const values = series.flatMap((s) => s.values.flatMap((row) => row.slice(1)));
    expect(values.some((v) => v !== null && v !== 0)).toBe(true);
  });
});
