/**
 * fill-publisher restoring a large positions changelog within its default heap bound
 * (scripts/lib/node-options.ts), as users run it. With a restore that fetched 32 MiB at once it
 * died of "JavaScript heap out of memory" on 1,000,000 accounts, again at every restart. On a
 * broker of its own: the positions produced here are not the other tests' accounts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKafka, createLogger, kafkaEnv, parseEnv, TOPICS } from '@tradeflow/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, runScript, sleep, startService, waitFor, type ServiceProcess } from '../../scripts/lib/processes.ts';
import { runInfraScript } from './infra.ts';

const ACCOUNTS = 400_000;
let port = 0;
let brokerEnv: Record<string, string> = {};
const stateDir = mkdtempSync(join(tmpdir(), 'tradeflow-restore-'));
const services: ServiceProcess[] = [];

beforeAll(async () => {
  port = await freePort();
  const controller = await freePort();
  brokerEnv = { KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(controller) };
  await runInfraScript('kafka', 'start', brokerEnv);
}, 600_000);

afterAll(async () => {
  for (const service of services) await service.stop('SIGKILL').catch(() => undefined);
  await runInfraScript('kafka', 'stop', brokerEnv);
  rmSync(stateDir, { recursive: true, force: true });
}, 600_000);

describe('fill-publisher restore', () => {
  it(`restores ${ACCOUNTS.toLocaleString('en-US')} positions into its store within its default heap bound`, async () => {
    const env = { KAFKA_BROKERS: `127.0.0.1:${port}`, LOG_LEVEL: 'info', FILL_PUBLISHER_STATE_DIR: stateDir, GROUP_ID: 'restore-fp' };
    // Its first start creates the topics. It serves /metrics before that, not healthy until the
    // topics are there: stopped at once on a loaded machine, it had created none, and the wait for
    // the positions topic's leaders below timed out ("does not host this topic-partition").
    const first = await startService('fill-publisher', { env, readyTimeoutMs: 300_000 });
    services.push(first);
    await waitFor('fill-publisher to have created the topics (healthy)', async () => ((await first.metrics()).healthy ? true : undefined), 300_000);
    expect(first.output()).toContain('"msg":"created topics"');
    expect((await first.stop('SIGTERM')).code).toBe(0);

    const kafka = createKafka(parseEnv(kafkaEnv, env), 'restore-test', createLogger('restore-test', 'error'));
    // The topics were just created on a new broker: until each partition has its leader, a send
    // fails with "does not host this topic-partition" (retried here, as a loaded machine needs).
    const admin = kafka.admin();
    await admin.connect();
    await waitFor('the positions topic to have a leader for each partition', async () => {
      const [topic] = (await admin.fetchTopicMetadata({ topics: [TOPICS.positions] })).topics;
      return topic !== undefined && topic.partitions.length > 0 && topic.partitions.every((p) => p.leader >= 0) ? true : undefined;
    }, 120_000, 500);
    await admin.disconnect();
    const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 30, initialRetryTime: 300, maxRetryTime: 5_000 } });
    await producer.connect();
    for (let from = 1; from <= ACCOUNTS; from += 5_000) {
      const messages = Array.from({ length: Math.min(5_000, ACCOUNTS - from + 1) }, (_, i) => {
        const id = from + i;
        return { key: String(id), value: JSON.stringify({ taxpayer_id: id, shares: { IVE: 1.5, IVV: 2.25 }, cash: -321.5, fills: 2, timestamp: 1_796_000_000 }) };
      });
      await producer.send({ topic: TOPICS.positions, acks: -1, messages });
    }
    await producer.disconnect();

    // A new group: nothing committed, so every task is restored from the changelog.
    const restoring = await startService('fill-publisher', { env: { ...env, GROUP_ID: 'restore-fp-2' }, readyTimeoutMs: 300_000 });
    services.push(restoring);
    expect(restoring.output()).toContain('"heapLimitMb"');
    // A task is restored when its first input arrives: fills to accounts of every partition.
    await runScript('queue-fills.ts', ['--count', '600', '--accounts', String(ACCOUNTS), '--seed', '4', '--quiet'], { KAFKA_BROKERS: env.KAFKA_BROKERS, LOG_LEVEL: 'error' });
    // Until every task is restored, or at once if it dies (waitFor would retry its failure).
    let restored: { changelogEntries: number }[] = [];
    const deadline = Date.now() + 300_000;
    while (restored.length < 6) {
      const { exitCode, signalCode } = restoring.child;
      if (exitCode !== null || signalCode !== null) throw new Error(`fill-publisher exited (${exitCode ?? signalCode}) while restoring:\n${restoring.output().slice(-3_000)}`);
      if (Date.now() > deadline) throw new Error(`not every task restored in 300 s:\n${restoring.output().slice(-3_000)}`);
      restored = restoring.output().split('\n').filter((line) => line.includes('"msg":"task state restored"')).map((line) => JSON.parse(line) as { changelogEntries: number });
      await sleep(500);
    }
    // All that was produced, and the snapshots of tasks that took fills before the last was restored.
    expect(restored.reduce((sum, line) => sum + line.changelogEntries, 0)).toBeGreaterThanOrEqual(ACCOUNTS);
    await waitFor('the 600 fills applied', async () => ((await restoring.metrics()).consumed >= 600 ? true : undefined), 300_000);
    expect((await restoring.stop('SIGTERM')).code).toBe(0);
  }, 900_000);
});
