/** Reading the provisioned dashboards and turning their panel queries into runnable InfluxQL. */
import { readdirSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { REPO } from '../../scripts/lib/processes.ts';

export interface PanelQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly query: string;
}

interface Dashboard {
  uid: string;
  title: string;
  panels: { id: number; title: string; datasource?: { uid?: string }; targets?: { query?: string; datasource?: { uid?: string } }[] }[];
  templating: { list: { name: string; query?: string; datasource?: { uid?: string } }[] };
}

export function loadDashboards(): Dashboard[] {
  const dir = `${REPO}/grafana/dashboards`;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as Dashboard);
}

export function provisionedDatasourceUid(): string {
  const file = parse(readFileSync(`${REPO}/grafana/provisioning/datasources/influxdb.yml`, 'utf8')) as { datasources: { uid: string }[] };
  return file.datasources[0]!.uid;
}

/** Grafana's macros replaced the way Grafana does for the last hour, a 10 s interval and one symbol. */
export function substituteMacros(query: string, symbol: string): string {
  return query
    .replaceAll('$timeFilter', 'time > now() - 1h')
    .replaceAll('$__interval_ms', '10000')
    .replaceAll('$__interval', '10s')
    .replaceAll('/^$symbol$/', `/^${symbol}$/`)
    .replaceAll('$symbol', symbol);
}

export function panelQueries(): PanelQuery[] {
  return loadDashboards().flatMap((d) => [
    ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ dashboard: d.title, panel: p.title, query: t.query ?? '' }))),
    ...d.templating.list.filter((v) => v.query !== undefined).map((v) => ({ dashboard: d.title, panel: `variable ${v.name}`, query: v.query! })),
  ]);
}
