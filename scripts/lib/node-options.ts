/**
 * The Node flags each service runs with: V8's heap bounds for every service (the portfolio service
 * holds its accounts in LMDB, outside the heap: a rebuild of 10 million keeps about 70 MB of heap in use). Left
 * to itself V8 lets a service's heap grow far above what it keeps alive (young
 * generation up to 3 × 64 MiB, the old one as large as the machine allows): order-matcher kept
 * about 50 MB alive and peaked at 440 MB RSS. The same flags are in docker-compose.yml
 * (the compose parity test checks they are the same), run-local and the tests start services with
 * them, and `<SERVICE>_NODE_OPTIONS` replaces a service's default (README, Configuration).
 * And where their compile cache lives.
 */
import { join } from 'node:path';
import { REPO } from './repo.ts';

/** The default NODE_OPTIONS of a service, or undefined: Node's own defaults. */
export const SERVICE_NODE_OPTIONS: Readonly<Record<string, string>> = {
  'tick-deserializer': '--max-old-space-size=128 --max-semi-space-size=8',
  'influx-writer': '--max-old-space-size=128 --max-semi-space-size=8',
  'order-matcher': '--max-old-space-size=128 --max-semi-space-size=8',
  'fill-publisher': '--max-old-space-size=128 --max-semi-space-size=8',
  portfolio: '--max-old-space-size=128 --max-semi-space-size=8',
};

/** The setting that replaces a service's default flags: ORDER_MATCHER_NODE_OPTIONS, … */
export const nodeOptionsVariable = (service: string): string => `${service.toUpperCase().replace(/-/g, '_')}_NODE_OPTIONS`;

/**
 * NODE_OPTIONS for a service: its `<SERVICE>_NODE_OPTIONS` when set (empty: none), else its default,
 * then NODE_OPTIONS from `env` (later flags win, so a user's NODE_OPTIONS still has the last word).
 */
export function nodeOptionsFor(service: string, env: Readonly<Record<string, string | undefined>>): string | undefined {
  const own = env[nodeOptionsVariable(service)] ?? SERVICE_NODE_OPTIONS[service];
  const joined = [own, env['NODE_OPTIONS']].filter((part) => part !== undefined && part.trim() !== '').join(' ');
  return joined === '' ? undefined : joined;
}

/**
 * Where services keep Node's compile cache: NODE_COMPILE_CACHE when set, else .local/ of the
 * checkout (the Docker image sets its own). Filled by scripts/warm-compile-cache.ts (bootstrap.sh
 * runs it): a service that finds its modules there never loads the type stripper, about 25 MB of
 * RSS less (an idle order-matcher: 92 MB against 117).
 */
export function compileCacheDir(env: Readonly<Record<string, string | undefined>>): string {
  const set = env['NODE_COMPILE_CACHE'];
  return set !== undefined && set.trim() !== '' ? set : join(REPO, '.local', 'node-compile-cache');
}

/**
 * glibc's allocator settings for every service (the Dockerfile sets the same, checked by
 * test/checks/compose.test.ts). A buffer of 128 KiB or more gets memory of its own (mmap), returned
 * to the system when it is freed. Left to itself glibc raises that threshold to the largest buffer
 * freed so far (up to 32 MiB), so fetch responses and produce requests of a few MiB came from its
 * main heap, which gives back only what is free at its top: fill-publisher's heap outside V8 held
 * 54 MB at its peak through a 40,000-order backlog, 14 MB with the threshold fixed (docs/performance.md).
 * A value the environment gives wins.
 */
export const SERVICE_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '131072' };

/**
 * The environment to spread into a service's: NODE_OPTIONS (nodeOptionsFor, when any),
 * NODE_COMPILE_CACHE, and the allocator's settings (SERVICE_MALLOC_ENV) unless `env` sets them.
 */
export function serviceNodeEnv(service: string, env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const options = nodeOptionsFor(service, env);
  const malloc = Object.fromEntries(Object.entries(SERVICE_MALLOC_ENV).map(([name, value]) => [name, env[name] ?? value]));
  return { ...(options === undefined ? {} : { NODE_OPTIONS: options }), NODE_COMPILE_CACHE: compileCacheDir(env), ...malloc };
}
