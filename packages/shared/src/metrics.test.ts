import { createServer } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ServiceMetrics, serveMetrics } from './metrics.ts';

describe('serveMetrics', () => {
  it('names METRICS_PORT when its port is taken, instead of a bare EADDRINUSE', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(serveMetrics(new ServiceMetrics('test'), '127.0.0.1', port, pino({ level: 'silent' }))).rejects.toThrow(
        `METRICS_PORT=${port}: 127.0.0.1:${port} is already in use by another process; set METRICS_PORT to a free port or stop that process`,
      );
    } finally {
      taken.close();
    }
  });

  it('serves /metrics and /health on a free port', async () => {
    const metrics = new ServiceMetrics('test');
    const server = await serveMetrics(metrics, '127.0.0.1', await freeOne(), pino({ level: 'silent' }));
    try {
      const port = (server!.address() as { port: number }).port;
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ healthy: true });
    } finally {
      server!.close();
    }
  });
});

async function freeOne(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('ServiceMetrics memory peaks', () => {
  it("counts the process's own memory (RssAnon) apart from mapped files, and keeps its peak", async () => {
    const metrics = new ServiceMetrics('test');
    const before = metrics.snapshot().memoryPeaks.anonymousRssBytes;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThanOrEqual(metrics.snapshot().peakRssBytes);
    // 64 MiB written (so resident), anonymous memory of this process.
    const held = Buffer.alloc(64 * 1024 * 1024, 1);
    await expect.poll(() => metrics.snapshot().memoryPeaks.anonymousRssBytes, { timeout: 30_000 }).toBeGreaterThanOrEqual(before + 60 * 1024 * 1024);
    expect(held[held.length - 1]).toBe(1);
  });
});
