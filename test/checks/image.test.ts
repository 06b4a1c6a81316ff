/**
 * The image, without a Docker engine: its file set is rebuilt in a temporary directory the way the
 * Dockerfile builds it (the deps stage's COPY lines, its `pnpm install` with --offline, then the
 * final stage's COPY lines minus what .dockerignore leaves out), and every program docker-compose
 * runs must load there: its imports resolve with production dependencies only. Each is started with
 * an invalid TOPIC_PARTITIONS, which every program checks after its imports have loaded, so the
 * expected outcome is that refusal, naming the variable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO } from '../../scripts/lib/processes.ts';

interface Copy {
  readonly sources: readonly string[];
  readonly destination: string;
}

/** The stages of the Dockerfile: their plain COPY lines (not --from) and RUN lines. */
function dockerfileStages(text: string): { copies: Copy[]; runs: string[] }[] {
  const stages: { copies: Copy[]; runs: string[] }[] = [];
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of lines) {
    const [instruction, ...rest] = line.trim().split(/\s+/);
    if (instruction === 'FROM') stages.push({ copies: [], runs: [] });
    else if (instruction === 'COPY' && !rest[0]!.startsWith('--')) stages[stages.length - 1]!.copies.push({ sources: rest.slice(0, -1), destination: rest[rest.length - 1]! });
    else if (instruction === 'RUN') stages[stages.length - 1]!.runs.push(rest.join(' '));
  }
  return stages;
}

const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const isIgnored = (path: string) => {
  const parts = path.split('/');
  return ignored.some((pattern) => {
    const name = pattern.replace(/^\*\*\//, '');
    return name.includes('*') ? path.endsWith(name.replace('*', '')) : parts.includes(name);
  });
};

function copyInto(app: string, { sources, destination }: Copy): void {
  for (const source of sources) {
    const target = destination.endsWith('/') || sources.length > 1 ? join(app, destination, source.split('/').pop()!) : join(app, destination);
    mkdirSync(dirname(target), { recursive: true });
    cpSync(join(REPO, source), target, { recursive: true, filter: (from) => !isIgnored(from.slice(REPO.length + 1)) });
  }
}

const compose = parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { command?: string[] }> };
const programs = [...new Set(Object.values(compose.services).flatMap((s) => (s.command?.[0]?.endsWith('.ts') === true ? [s.command[0]] : [])))].sort();

let app: string;

beforeAll(() => {
  app = mkdtempSync(join(tmpdir(), 'tradeflow-image-'));
  const [deps, final] = dockerfileStages(readFileSync(join(REPO, 'Dockerfile'), 'utf8'));
  for (const copy of deps!.copies) copyInto(app, copy);
  const install = deps!.runs.find((run) => run.startsWith('pnpm install'));
  expect(install, 'the deps stage runs pnpm install').toBeDefined();
  const args = install!.split(/\s+/).slice(1);
  // The packages are in the store already (the test command installed them), so nothing is fetched.
  execFileSync('pnpm', [...args, '--offline'], { cwd: app, stdio: 'pipe', env: { ...process.env, NODE_ENV: 'production', CI: 'true' } });
  for (const copy of final!.copies) copyInto(app, copy);
  // The final stage's compile-cache step, into a directory of the copy (the image's is under /var/cache).
  const warm = final!.runs.find((run) => run.startsWith('node scripts/warm-compile-cache.ts'));
  expect(warm, 'the final stage fills the compile cache').toBeDefined();
  execFileSync(process.execPath, ['scripts/warm-compile-cache.ts'], { cwd: app, stdio: 'pipe', env: { PATH: process.env['PATH'] ?? '', NODE_COMPILE_CACHE: join(app, '.compile-cache') } });
}, 600_000);

afterAll(() => {
  if (app !== undefined) rmSync(app, { recursive: true, force: true });
});

describe('the image built from the Dockerfile', () => {
  it('has production dependencies only and none of the host node_modules of the sources', () => {
    expect(existsSync(join(app, 'node_modules/kafkajs'))).toBe(false); // a dependency of packages/shared, not of the root
    expect(existsSync(join(app, 'packages/shared/node_modules/kafkajs'))).toBe(true);
    expect(existsSync(join(app, 'node_modules/vitest'))).toBe(false);
    expect(existsSync(join(app, 'node_modules/typescript'))).toBe(false);
  });

  it('runs every program docker-compose starts: all imports resolve', () => {
    expect(programs).toEqual([
      'scripts/check-settings.ts',
      'scripts/queue-executions.ts',
      'scripts/queue-orders.ts',
      'scripts/queue-ticks.ts',
      'scripts/topic-init.ts',
      'services/fill-publisher/src/main.ts',
      'services/influx-writer/src/main.ts',
      'services/order-matcher/src/main.ts',
      'services/portfolio/src/main.ts',
      'services/tick-deserializer/src/main.ts',
    ]);
    for (const program of programs) {
      const run = spawnSync(process.execPath, [program], {
        cwd: app,
        env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', TOPIC_PARTITIONS: '0', KAFKA_BROKERS: '127.0.0.1:1' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      const output = `${run.stdout}${run.stderr}`;
      expect(output, program).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (module|package)/);
      // Each stops at its first check of the environment (check-settings' is the passwords).
      expect(output, program).toContain(program === 'scripts/check-settings.ts' ? 'INFLUX_ADMIN_PASSWORD is empty' : 'TOPIC_PARTITIONS');
      expect(run.status, program).not.toBe(0);
    }
  }, 300_000);

  it("starts every service from the compile cache its build filled (no TypeScript stripped at run time)", () => {
    const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^ENV .*NODE_COMPILE_CACHE=\/var\/cache\/tradeflow\/node-compile-cache/m);
    for (const program of programs.filter((p) => p.startsWith('services/'))) {
      const run = spawnSync(process.execPath, [program], {
        cwd: app,
        env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'production', TOPIC_PARTITIONS: '0', NODE_COMPILE_CACHE: join(app, '.compile-cache'), NODE_DEBUG_NATIVE: 'COMPILE_CACHE' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      const log = `${run.stdout}${run.stderr}`;
      expect(log, program).toContain(`retrieving transpile cache for StrippedTypeScript file://${join(app, program)}...success`);
      expect(log.split('\n').filter((line) => line.includes('(StrippedTypeScript)') && line.includes('Creating')), program).toEqual([]);
    }
  }, 300_000);
});
