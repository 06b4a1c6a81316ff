/**
 * End offsets a test can read to: a transaction's commit returns before its coordinator has written
 * the commit markers, and until a partition has its marker the broker's read_committed end (the last
 * stable offset, what admin.fetchTopicOffsets gives) stops before that transaction's records. Read
 * right after a commit, the end left out 231-606 of a 600-record transaction over six partitions in
 * 17 of 30 rounds on one broker. Here both ends are asked until they agree: then no transaction is
 * open below the end, and every committed record is below it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection, Reader, Writer } from '../../packages/shared/src/wire/connection.ts';
import { hostPort, lookUpCluster } from '../../packages/shared/src/wire/committed-reader.ts';

const API_LIST_OFFSETS = 2;
const READ_UNCOMMITTED = 0;
const READ_COMMITTED = 1;

function listOffsetsRequest(topic: string, partitions: readonly number[], isolation: number): Buffer {
  return new Writer()
    .int32(-1) // replica id: a consumer
    .int8(isolation)
    .array([topic], (w, t) => w.string(t).array(partitions, (w, p) => w.int32(p).int64(-1))) // -1: the latest offset
    .bytes();
}

function parseListOffsets(body: Buffer): Map<number, number> {
  const r = new Reader(body);
  r.int32(); // throttle time
  const offsets = new Map<number, number>();
  r.array((r) => {
    r.string();
    r.array((r) => {
      const partition = r.int32();
      const error = r.int16();
      r.int64(); // timestamp
      const offset = Number(r.int64());
      if (error !== 0) throw new Error(`ListOffsets of partition ${partition}: error ${error}`);
      offsets.set(partition, offset);
    });
  });
  return offsets;
}

/** Each partition's end offset read_committed and read_uncommitted, both asked of its leader on one connection. */
async function endOffsets(brokers: string, topic: string): Promise<{ committed: Map<number, number>; written: Map<number, number> }> {
  const connect = (host: string, port: number) => new Connection({ host, port, clientId: 'end-offsets', ssl: false, connectTimeoutMs: 10_000, requestTimeoutMs: 30_000 });
  const cluster = await lookUpCluster(brokers.split(',').map(hostPort), [topic], connect);
  const byLeader = new Map<number, number[]>();
  for (const [partition, leader] of cluster.leaders.get(topic)!) byLeader.set(leader, [...(byLeader.get(leader) ?? []), partition]);
  const committed = new Map<number, number>();
  const written = new Map<number, number>();
  for (const [leader, partitions] of byLeader) {
    const { host, port } = cluster.brokers.get(leader)!;
    const connection = connect(host, port);
    try {
      for (const [isolation, ends] of [[READ_COMMITTED, committed], [READ_UNCOMMITTED, written]] as const) {
        for (const [p, o] of parseListOffsets(await connection.request(API_LIST_OFFSETS, 2, listOffsetsRequest(topic, partitions, isolation)))) ends.set(p, o);
      }
    } finally {
      connection.close();
    }
  }
  return { committed, written };
}

/**
 * Each partition's end once every transaction written to `topic` so far has its markers (the
 * read_committed and read_uncommitted ends agree). For a topic no one is writing to.
 */
export async function settledEndOffsets(brokers: string, topic: string, timeoutMs = 120_000): Promise<Map<number, number>> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const { committed, written } = await endOffsets(brokers, topic);
      if (committed.size > 0 && [...written].every(([p, o]) => committed.get(p) === o)) return committed;
      last = `read_committed ${[...committed].join(' ')}, read_uncommitted ${[...written].join(' ')}`;
    } catch (error) {
      last = String((error as Error).message ?? error); // a leader moving: ask again
    }
    if (Date.now() > deadline) throw new Error(`${topic}: the end offsets did not settle within ${timeoutMs} ms (${last})`);
    await sleep(50);
  }
}
