import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileCacheDir, nodeOptionsFor, nodeOptionsVariable, serviceNodeEnv } from './node-options.ts';
import { REPO } from './processes.ts';

describe('nodeOptionsFor', () => {
  it('gives a service its default heap bounds, and none to a service without', () => {
    expect(nodeOptionsFor('order-matcher', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('fill-publisher', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('tick-deserializer', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('influx-writer', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('portfolio', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('a-tool', {})).toBeUndefined();
  });

  it('lets <SERVICE>_NODE_OPTIONS replace the default (empty: none) and NODE_OPTIONS come last', () => {
    expect(nodeOptionsVariable('fill-publisher')).toBe('FILL_PUBLISHER_NODE_OPTIONS');
    expect(nodeOptionsFor('fill-publisher', { FILL_PUBLISHER_NODE_OPTIONS: '--max-old-space-size=512' })).toBe('--max-old-space-size=512');
    expect(nodeOptionsFor('fill-publisher', { FILL_PUBLISHER_NODE_OPTIONS: '' })).toBeUndefined();
    expect(nodeOptionsFor('order-matcher', { NODE_OPTIONS: '--max-old-space-size=256' })).toBe('--max-old-space-size=128 --max-semi-space-size=8 --max-old-space-size=256');
    expect(nodeOptionsFor('a-tool', { NODE_OPTIONS: '--enable-source-maps' })).toBe('--enable-source-maps');
    expect(nodeOptionsFor('portfolio', { PORTFOLIO_NODE_OPTIONS: '', NODE_OPTIONS: '--enable-source-maps' })).toBe('--enable-source-maps');
  });
});

describe("the allocator's settings", () => {
  it('fix glibc\'s mmap threshold at 128 KiB for every service, unless the environment sets it', () => {
    expect(serviceNodeEnv('fill-publisher', {})['MALLOC_MMAP_THRESHOLD_']).toBe('131072');
    expect(serviceNodeEnv('fill-publisher', { MALLOC_MMAP_THRESHOLD_: '65536' })['MALLOC_MMAP_THRESHOLD_']).toBe('65536');
  });
});

describe('the compile cache', () => {
  it('is NODE_COMPILE_CACHE when set, else .local/node-compile-cache, for every service', () => {
    expect(serviceNodeEnv('order-matcher', {})).toEqual({ NODE_OPTIONS: '--max-old-space-size=128 --max-semi-space-size=8', NODE_COMPILE_CACHE: join(REPO, '.local', 'node-compile-cache'), MALLOC_MMAP_THRESHOLD_: '131072' });
    expect(serviceNodeEnv('portfolio', { NODE_COMPILE_CACHE: '/var/cache/x', PORTFOLIO_NODE_OPTIONS: '' })).toEqual({ NODE_COMPILE_CACHE: '/var/cache/x', MALLOC_MMAP_THRESHOLD_: '131072' });
    expect(compileCacheDir({ NODE_COMPILE_CACHE: ' ' })).toBe(join(REPO, '.local', 'node-compile-cache'));
  });

  it('warmed by scripts/warm-compile-cache.ts, holds every module a service loads: none strips a file itself', () => {
    const dir = mkdtempSync(join(tmpdir(), 'compile-cache-'));
    try {
      const warm = spawnSync(process.execPath, [join(REPO, 'scripts', 'warm-compile-cache.ts')], { env: { PATH: process.env['PATH'] ?? '', NODE_COMPILE_CACHE: dir }, encoding: 'utf8', timeout: 120_000 });
      expect(warm.stderr).toBe('');
      expect(warm.status).toBe(0);
      const services = readdirSync(join(REPO, 'services'));
      expect(services.length).toBeGreaterThanOrEqual(5);
      for (const service of services) {
        // Node's own account of its compile cache: a file it had to strip is written to the cache.
        const run = spawnSync(process.execPath, [join(REPO, 'services', service, 'src', 'main.ts')], {
          env: { PATH: process.env['PATH'] ?? '', NODE_COMPILE_CACHE: dir, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', TOPIC_PARTITIONS: '0' },
          encoding: 'utf8',
          timeout: 60_000,
        });
        const log = `${run.stdout}${run.stderr}`;
        expect(log, service).toContain(`retrieving transpile cache for StrippedTypeScript file://${join(REPO, 'services', service, 'src', 'main.ts')}...success`);
        expect(log.split('\n').filter((line) => line.includes('(StrippedTypeScript)') && line.includes('Creating')), service).toEqual([]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
