/**
 * docker-compose.yml as Docker Compose v2 reads it: YAML with anchors and merge keys, variables
 * from the shell environment first and the env file (.env) second, every string value substituted
 * (`${VAR:?message}` failing as compose fails), and each service's settings in one shape.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { parseDotenv } from './dotenv.ts';
import { interpolateTree, type Lookup } from './interpolate.ts';

export interface PortMapping {
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
}

export interface VolumeMount {
  /** A named volume, or a host path for a bind mount. */
  readonly source: string;
  readonly kind: 'volume' | 'bind';
  readonly target: string;
  readonly readOnly: boolean;
}

export interface Healthcheck {
  readonly disable: boolean;
  /** ['CMD', ...argv], ['CMD-SHELL', command] or ['NONE']. */
  readonly test?: readonly string[];
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  readonly retries?: number;
  readonly startPeriodMs?: number;
}

export type DependencyCondition = 'service_started' | 'service_healthy' | 'service_completed_successfully';

export interface ServiceConfig {
  readonly name: string;
  readonly image?: string;
  readonly build?: unknown;
  readonly command?: readonly string[];
  readonly entrypoint?: readonly string[];
  readonly environment: Readonly<Record<string, string>>;
  readonly dependsOn: Readonly<Record<string, DependencyCondition>>;
  readonly healthcheck?: Healthcheck;
  readonly ports: readonly PortMapping[];
  readonly volumes: readonly VolumeMount[];
  readonly profiles: readonly string[];
  readonly restart: string;
}

export interface ComposeProject {
  readonly name: string;
  readonly directory: string;
  readonly services: ReadonlyMap<string, ServiceConfig>;
  /** Variables the file used that were set nowhere (compose warns and uses ""). */
  readonly unset: readonly string[];
}

export class ComposeError extends Error {
  override readonly name = 'ComposeError';
}

/** Go-style durations compose takes: 1m30s, 5s, 200ms. */
export function durationMs(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = String(value);
  let total = 0;
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001, ns: 0.000001 };
  const rest = text.replace(/(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)/g, (_whole, n: string, unit: string) => {
    total += Number(n) * units[unit]!;
    return '';
  });
  if (rest !== '') throw new ComposeError(`not a duration: ${text}`);
  return total;
}

function asList(value: unknown, what: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value.split(/\s+/).filter((part) => part !== '');
  if (Array.isArray(value)) return value.map(String);
  throw new ComposeError(`${what} must be a string or a list`);
}

function environmentOf(value: unknown, lookup: Lookup): Record<string, string> {
  const env: Record<string, string> = {};
  if (Array.isArray(value)) {
    for (const entry of value.map(String)) {
      const eq = entry.indexOf('=');
      if (eq < 0) {
        const inherited = lookup(entry);
        if (inherited !== undefined) env[entry] = inherited;
      } else env[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, v] of Object.entries(value)) {
      if (v === null || v === undefined) {
        const inherited = lookup(key);
        if (inherited !== undefined) env[key] = inherited;
      } else env[key] = typeof v === 'boolean' ? String(v) : String(v);
    }
  }
  return env;
}

function portsOf(value: unknown, service: string): PortMapping[] {
  return (Array.isArray(value) ? value : []).map((entry) => {
    const text = String(entry);
    const match = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)(?:\/tcp)?$/.exec(text);
    if (match === null) throw new ComposeError(`${service}: a port mapping this runner does not know: ${text}`);
    return { hostIp: match[1] ?? '0.0.0.0', hostPort: Number(match[2]), containerPort: Number(match[3]) };
  });
}

function volumesOf(value: unknown, directory: string, service: string): VolumeMount[] {
  return (Array.isArray(value) ? value : []).map((entry) => {
    const [source, target, mode] = String(entry).split(':');
    if (source === undefined || target === undefined) throw new ComposeError(`${service}: a volume this runner does not know: ${String(entry)}`);
    const bind = source.startsWith('.') || source.startsWith('/');
    return { source: bind ? resolve(directory, source) : source, kind: bind ? 'bind' : 'volume', target, readOnly: mode === 'ro' };
  });
}

function healthcheckOf(value: unknown): Healthcheck | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const h = value as Record<string, unknown>;
  const test = asList(h['test'], 'healthcheck.test');
  const check: Healthcheck = {
    disable: h['disable'] === true || test?.[0] === 'NONE',
    ...(test === undefined ? {} : { test: Array.isArray(h['test']) ? (h['test'] as unknown[]).map(String) : ['CMD-SHELL', String(h['test'])] }),
  };
  const timing = { intervalMs: durationMs(h['interval']), timeoutMs: durationMs(h['timeout']), startPeriodMs: durationMs(h['start_period']) };
  return { ...check, ...Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined)), ...(h['retries'] === undefined ? {} : { retries: Number(h['retries']) }) };
}

function dependsOnOf(value: unknown): Record<string, DependencyCondition> {
  if (Array.isArray(value)) return Object.fromEntries(value.map((name) => [String(name), 'service_started' as const]));
  if (typeof value !== 'object' || value === null) return {};
  return Object.fromEntries(
    Object.entries(value).map(([name, spec]) => [name, ((spec as { condition?: DependencyCondition } | null)?.condition ?? 'service_started')]),
  );
}

/**
 * Reads a compose file with the variables of `envFile` (a .env; absent is fine) and of `shell`
 * (which wins, as in compose).
 */
export function loadProject(file: string, options: { envFile?: string; shell?: Readonly<Record<string, string | undefined>> } = {}): ComposeProject {
  const directory = dirname(resolve(file));
  const shell = options.shell ?? {};
  const shellLookup: Lookup = (name) => shell[name];
  let dotenv = new Map<string, string>();
  if (options.envFile !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(options.envFile, 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) dotenv = parseDotenv(text, shellLookup);
  }
  const lookup: Lookup = (name) => shell[name] ?? dotenv.get(name);
  const raw = parse(readFileSync(file, 'utf8'), { merge: true, maxAliasCount: -1 }) as Record<string, unknown>;
  const unset = new Set<string>();
  const tree = interpolateTree(raw, lookup, (name) => unset.add(name)) as { name?: string; services?: Record<string, Record<string, unknown>> };
  const services = new Map<string, ServiceConfig>();
  for (const [name, s] of Object.entries(tree.services ?? {})) {
    const command = asList(s['command'], `${name}.command`);
    const entrypoint = asList(s['entrypoint'], `${name}.entrypoint`);
    const healthcheck = healthcheckOf(s['healthcheck']);
    services.set(name, {
      name,
      ...(typeof s['image'] === 'string' ? { image: s['image'] } : {}),
      ...(s['build'] === undefined ? {} : { build: s['build'] }),
      ...(command === undefined ? {} : { command }),
      ...(entrypoint === undefined ? {} : { entrypoint }),
      ...(healthcheck === undefined ? {} : { healthcheck }),
      environment: environmentOf(s['environment'], lookup),
      dependsOn: dependsOnOf(s['depends_on']),
      ports: portsOf(s['ports'], name),
      volumes: volumesOf(s['volumes'], directory, name),
      profiles: asList(s['profiles'], `${name}.profiles`) ?? [],
      restart: typeof s['restart'] === 'string' ? s['restart'] : 'no',
    });
  }
  return { name: tree.name ?? 'project', directory, services, unset: [...unset] };
}

/** The services `docker compose [--profile p ...] up` starts: those without a profile, and those of the profiles given. */
export function activeServices(project: ComposeProject, profiles: readonly string[] = []): ServiceConfig[] {
  return [...project.services.values()].filter((s) => s.profiles.length === 0 || s.profiles.some((p) => profiles.includes(p)));
}

/** The services in an order that starts each after what it depends on. */
export function startOrder(services: readonly ServiceConfig[]): ServiceConfig[] {
  const byName = new Map(services.map((s) => [s.name, s]));
  const ordered: ServiceConfig[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (service: ServiceConfig, path: string[]) => {
    if (state.get(service.name) === 'done') return;
    if (state.get(service.name) === 'visiting') throw new ComposeError(`dependency cycle: ${[...path, service.name].join(' -> ')}`);
    state.set(service.name, 'visiting');
    for (const dependency of Object.keys(service.dependsOn)) {
      const target = byName.get(dependency);
      if (target === undefined) throw new ComposeError(`${service.name} depends on ${dependency}, which is not started (a profile?)`);
      visit(target, [...path, service.name]);
    }
    state.set(service.name, 'done');
    ordered.push(service);
  };
  for (const service of services) visit(service, []);
  return ordered;
}
