import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

describe('tick-deserializer start-up', () => {
  it('stops at a bad PRICE_COMMIT_INTERVAL_MS and names it, before connecting to Kafka', () => {
    const run = spawnSync(process.execPath, [MAIN], {
      env: { PATH: process.env['PATH'] ?? '', KAFKA_BROKERS: '127.0.0.1:1', PRICE_COMMIT_INTERVAL_MS: 'soon' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('PRICE_COMMIT_INTERVAL_MS="soon": must be a whole number');
  });
});
