import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, ServiceMetrics, TOPICS, type ConsumedRecord, type Fill, type StatefulHandler } from '@tradeflow/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { createPositionsHandler, type PositionsTask } from './handler.ts';
import { DATABASE_FILE, PositionStore, STATE_FILE, type StoreState } from './store.ts';

const dirs: string[] = [];
const stores: PositionStore[] = [];
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'positions-store-'));
  dirs.push(dir);
  return dir;
}

function openStore(dir: string): PositionStore {
  const store = PositionStore.open(dir, 'test-positions');
  stores.push(store);
  return store;
}

async function closeStore(store: PositionStore): Promise<void> {
  stores.splice(stores.indexOf(store), 1);
  await store.close();
}

let offset = 0;
const fillRecord = (taxpayer_id: number, symbol: string, shares: number, cash: number): ConsumedRecord => {
  const n = ++offset;
  const fill: Fill = {
    taxpayer_id, portfolio_order_id: '0b0a1c9e-4a4e-4d7e-9a53-3f1b3e0c9a11', component_order_id: `c${n}`, market_order_id: `m${n}`, execution_id: `e${n}`, fill_id: `f${n}`,
    symbol, order_type: shares >= 0 ? 'BUY' : 'SELL', filled_amount: Math.abs(cash), filled_shares: Math.abs(shares), filled_price: 1,
    delta_shares_position: shares, delta_cash_position: cash, timestamp: 1_700_000_000 + n,
  };
  return { topic: TOPICS.fills, partition: 0, offset: String(n), key: Buffer.from(String(taxpayer_id)), value: Buffer.from(JSON.stringify(fill)), headers: {}, timestamp: '0' };
};

const handlerOn = (store: PositionStore): StatefulHandler<PositionsTask> => createPositionsHandler(new ServiceMetrics('test'), createLogger('test', 'silent'), store);
const at = (next: bigint) => new Map([[TOPICS.fills, next]]);
/** The snapshot the store holds for an account (the stage's own text, or bytes restored from the changelog). */
const snapshotOf = (store: PositionStore, partition: number, taxpayerId: number) => {
  const stored = store.task(partition).get(taxpayerId);
  if (stored === undefined) return undefined;
  return JSON.parse(stored.toString()) as { shares: Record<string, number>; cash: number; fills: number };
};

/** Restores partition 0 from these changelog entries, as the runner does, and checkpoints it at `next`. */
async function restored(handler: StatefulHandler<PositionsTask>, entries: { key: string; value: Buffer | null }[], next: bigint): Promise<PositionsTask> {
  const restorer = handler.restore(0);
  await restorer.add(entries);
  const task = restorer.end();
  handler.checkpoint!(task, at(next));
  return task;
}

describe('PositionStore with the positions handler', () => {
  it('restores a task from its changelog into the store, and opens it again only as of the same committed offsets', async () => {
    const dir = tempDir();
    let store = openStore(dir);
    let handler = handlerOn(store);
    expect(handler.open!(0, at(0n))).toBeUndefined();
    const snapshot = (id: number, cash: number, fills: number) => ({ key: String(id), value: Buffer.from(JSON.stringify({ taxpayer_id: id, shares: { IVE: 1 }, cash, fills, timestamp: 1_700_000_000 })) });
    // Later entries of a key win; a tombstone deletes.
    await restored(handler, [snapshot(1, -10, 1), snapshot(2, -5, 1), snapshot(1, -20, 2), { key: '2', value: null }], 40n);
    expect(snapshotOf(store, 0, 1)).toEqual({ taxpayer_id: 1, shares: { IVE: 1 }, cash: -20, fills: 2, timestamp: 1_700_000_000 });
    expect(snapshotOf(store, 0, 2)).toBeUndefined();
    expect(store.task(0).offsets()).toEqual(at(40n));

    await closeStore(store);
    store = openStore(dir);
    handler = handlerOn(store);
    expect(handler.open!(0, at(41n))).toBeUndefined();
    expect(handler.open!(0, new Map([[TOPICS.fills, 40n], ['other', 0n]]))).toBeUndefined();
    const task = handler.open!(0, at(40n))!;
    expect(task).toBeDefined();
    // A fill reaches the stored account: its sums go on from the snapshot.
    const update = handler.process(task, [fillRecord(1, 'IVE', 2.5, -7.25)], { topic: TOPICS.fills, partition: 0 });
    expect(JSON.parse(update.changelog[0]!.value!.toString())).toMatchObject({ taxpayer_id: 1, shares: { IVE: 3.5 }, cash: -27.25, fills: 3 });
  });

  it('writes changes only at a checkpoint, with the offsets: a transaction that never committed leaves the store as it was', async () => {
    const dir = tempDir();
    let store = openStore(dir);
    let handler = handlerOn(store);
    let task = await restored(handler, [], 0n);
    handler.process(task, [fillRecord(7, 'VTI', 1, -10), fillRecord(7, 'IWS', 2, -20), fillRecord(8, 'VTI', 1, -10)], { topic: TOPICS.fills, partition: 0 });
    expect(snapshotOf(store, 0, 7)).toBeUndefined();
    handler.checkpoint!(task, at(3n));
    expect(snapshotOf(store, 0, 7)).toMatchObject({ shares: { IWS: 2, VTI: 1 }, cash: -30, fills: 2 });
    expect(task.book.accounts.size).toBe(0);

    // Processed, then the process dies before the transaction commits.
    handler.process(task, [fillRecord(7, 'VTI', 5, -50)], { topic: TOPICS.fills, partition: 0 });
    await closeStore(store);
    store = openStore(dir);
    handler = handlerOn(store);
    task = handler.open!(0, at(3n))!;
    expect(task).toBeDefined();
    expect(snapshotOf(store, 0, 7)).toMatchObject({ shares: { IWS: 2, VTI: 1 }, fills: 2 });
    const update = handler.process(task, [fillRecord(7, 'VTI', 5, -50)], { topic: TOPICS.fills, partition: 0 });
    expect(JSON.parse(update.changelog[0]!.value!.toString())).toMatchObject({ shares: { IWS: 2, VTI: 6 }, cash: -80, fills: 3 });
  });

  it('clears what a task held before restoring it (the partition was owned elsewhere meanwhile)', async () => {
    const store = openStore(tempDir());
    const handler = handlerOn(store);
    const task = await restored(handler, [], 0n);
    handler.process(task, [fillRecord(1, 'VTI', 1, -10), fillRecord(2, 'VTI', 1, -10)], { topic: TOPICS.fills, partition: 0 });
    handler.checkpoint!(task, at(2n));
    await restored(handler, [{ key: '2', value: Buffer.from(JSON.stringify({ taxpayer_id: 2, shares: { VTI: 4 }, cash: -40, fills: 4, timestamp: 1_700_000_009 })) }], 9n);
    expect(snapshotOf(store, 0, 1)).toBeUndefined();
    expect(snapshotOf(store, 0, 2)).toMatchObject({ shares: { VTI: 4 }, fills: 4 });
    expect(store.task(0).accounts()).toBe(1);
    // Other tasks are untouched.
    expect(store.task(1).offsets()).toBeUndefined();
  });

  it("decodes a restored snapshot in full when a fill first reaches it, and patches the stage's own text from then on", async () => {
    const store = openStore(tempDir());
    const handler = handlerOn(store);
    // As the changelog may hold it: not this stage's form (1.50, keys out of order), so never patched as it is.
    const written = '{"shares":{"VTI":1.50,"IVE":2},"taxpayer_id":4,"cash":-10.0,"fills":2,"timestamp":1700000001}';
    const task = await restored(handler, [{ key: '4', value: Buffer.from(written) }], 5n);
    // Restored: the record's bytes, as they are.
    expect(store.task(0).get(4)).toEqual(Buffer.from(written));
    const first = handler.process(task, [fillRecord(4, 'VTI', 1, -10)], { topic: TOPICS.fills, partition: 0 });
    expect(first.changelog[0]!.value!.toString()).toMatch(/^\{"taxpayer_id":4,"shares":\{"IVE":2,"VTI":2\.5\},"cash":-20,"fills":3,"timestamp":\d+\}$/);
    handler.checkpoint!(task, at(6n));
    // Written by the stage: its text, the record's value as produced.
    expect(store.task(0).get(4)).toBe(first.changelog[0]!.value);
    // Opened again from the store: the fill patches the text (the book holds it as text).
    const reopened = handler.open!(0, at(6n))!;
    const second = handler.process(reopened, [fillRecord(4, 'IVE', -0.5, 5.25)], { topic: TOPICS.fills, partition: 0 });
    expect(second.changelog[0]!.value!.toString()).toMatch(/^\{"taxpayer_id":4,"shares":\{"IVE":1\.5,"VTI":2\.5\},"cash":-14\.75,"fills":4,"timestamp":\d+\}$/);
    expect('text' in reopened.book.accounts.get(4)!).toBe(true);
  });

  it('keeps the tasks of one store apart', async () => {
    const store = openStore(tempDir());
    const handler = handlerOn(store);
    const restorer = handler.restore(3);
    const three = restorer.end();
    handler.checkpoint!(three, at(0n));
    const zero = await restored(handler, [], 0n);
    handler.process(zero, [fillRecord(5, 'VTI', 1, -10)], { topic: TOPICS.fills, partition: 0 });
    handler.checkpoint!(zero, at(1n));
    expect(snapshotOf(store, 0, 5)).toMatchObject({ fills: 1 });
    expect(snapshotOf(store, 3, 5)).toBeUndefined();
    expect(store.task(3).offsets()).toEqual(at(0n));
  });

  it('gives a second live process on the same host a store of its own, and the first one back its own after a restart', async () => {
    const dir = tempDir();
    const first = openStore(dir);
    expect(first.path).toMatch(/test-positions-[^/]+$/);
    // A live process (the test's parent) holds a second one.
    const held = `${first.path}-2`;
    mkdirSync(held, { recursive: true });
    writeFileSync(join(held, 'owner.pid'), `${process.ppid}\n`);
    await closeStore(first);
    const again = openStore(dir);
    expect(again.path).toBe(first.path);
    // While this process holds the first, a process with another pid would get the third.
    writeFileSync(join(first.path, 'owner.pid'), `${process.ppid}\n`);
    const other = openStore(dir);
    expect(other.path).toBe(`${first.path}-3`);
  });

  it('trusts a store a crashed process left (same boot), and restores every task of one an earlier boot left open', async () => {
    const dir = tempDir();
    const store = openStore(dir);
    const handler = handlerOn(store);
    await restored(handler, [{ key: '1', value: Buffer.from(JSON.stringify({ taxpayer_id: 1, shares: { IVE: 1 }, cash: -1, fills: 1, timestamp: 1_700_000_000 })) }], 7n);
    expect(store.distrusted).toBeUndefined();
    await closeStore(store);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    // What the store records of itself, as a process that died with it open in this boot, or in an earlier one, left it.
    const leave = (state: StoreState) => writeFileSync(join(store.path, STATE_FILE), JSON.stringify(state));

    await leave({ boot, closedCleanly: false });
    const afterCrash = openStore(dir);
    expect(afterCrash.distrusted).toBeUndefined();
    expect(handlerOn(afterCrash).open!(0, at(7n))).toBeDefined();
    await closeStore(afterCrash);

    await leave({ boot: 'an-earlier-boot', closedCleanly: true });
    const afterCleanClose = openStore(dir);
    expect(afterCleanClose.distrusted).toBeUndefined();
    expect(handlerOn(afterCleanClose).open!(0, at(7n))).toBeDefined();
    await closeStore(afterCleanClose);

    await leave({ boot: 'an-earlier-boot', closedCleanly: false });
    // Not trusted, and deleted (the files may be torn): nothing of it is read.
    writeFileSync(join(store.path, DATABASE_FILE), 'torn pages');
    const afterReset = openStore(dir);
    expect(afterReset.distrusted).toMatch(/earlier boot/);
    expect(handlerOn(afterReset).open!(0, at(7n))).toBeUndefined();
    expect(afterReset.task(0).accounts()).toBe(0);
    // It is trusted again once restored, and a clean close keeps it so.
    await restored(handlerOn(afterReset), [], 9n);
    await closeStore(afterReset);
    const next = openStore(dir);
    expect(next.distrusted).toBeUndefined();
    expect(handlerOn(next).open!(0, at(9n))).toBeDefined();
  });

  it('writes the checkpoints of several tasks in one transaction (checkpointAll)', () => {
    const store = openStore(tempDir());
    const handler = handlerOn(store);
    const tasks = [0, 1, 2].map((partition) => {
      const restorer = handler.restore(partition);
      return restorer.end();
    });
    tasks.forEach((task, partition) => handler.process(task, [{ ...fillRecord(10 + partition, 'IVE', 1, -2), partition }], { topic: TOPICS.fills, partition }));
    handler.checkpointAll!(tasks.map((task, partition) => [task, at(BigInt(100 + partition))] as const));
    for (const partition of [0, 1, 2]) {
      expect(store.task(partition).offsets()).toEqual(at(BigInt(100 + partition)));
      expect(snapshotOf(store, partition, 10 + partition)).toMatchObject({ shares: { IVE: 1 }, cash: -2, fills: 1 });
      expect(tasks[partition]!.changed.size).toBe(0);
    }
  });

  it('does not trust a database without a record of how it was closed, and drops an LMDB store of an earlier version', async () => {
    const dir = tempDir();
    const store = openStore(dir);
    await restored(handlerOn(store), [{ key: '1', value: Buffer.from('{"taxpayer_id":1,"shares":{},"cash":0,"fills":0,"timestamp":0}') }], 3n);
    await closeStore(store);
    rmSync(join(store.path, STATE_FILE));
    mkdirSync(join(store.path, 'lmdb'));
    writeFileSync(join(store.path, 'lmdb', 'data.mdb'), 'an earlier version');
    const reopened = openStore(dir);
    expect(reopened.distrusted).toMatch(/no record/);
    expect(handlerOn(reopened).open!(0, at(3n))).toBeUndefined();
    expect(existsSync(join(store.path, 'lmdb'))).toBe(false);
    // The state is recorded again at once: a crash of this process now leaves a store that is trusted.
    expect(JSON.parse(readFileSync(join(store.path, STATE_FILE), 'utf8'))).toMatchObject({ closedCleanly: false });
  });

  it('writes nothing of a transaction that fails part-way (a snapshot that is not bytes): the store stays as of its last checkpoint', async () => {
    const store = openStore(tempDir());
    const task = store.task(0);
    task.write([[1, Buffer.from('one')]], at(1n));
    expect(() => task.write([[2, Buffer.from('two')], [3, {} as unknown as Buffer]], at(2n))).toThrow();
    expect(task.get(2)).toBeUndefined();
    expect(task.offsets()).toEqual(at(1n));
    expect(task.get(1)!.toString()).toBe('one');
    expect(task.accounts()).toBe(1);
  });
});
