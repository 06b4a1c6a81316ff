/**
 * A live reader of committed records for a set of topic-partitions that changes (a consumer
 * group's assignment, kept by the Kafka client): the lean reader's requests (committed-reader.ts)
 * and in-place decoding, following each partition from an offset on for as long as it is assigned.
 * One connection per partition leader; each fetch long-polls (maxWaitMs), the next one goes out as
 * soon as the last one's batch headers are read, and each partition's records are handed over in
 * order, a fetch's batch at a time, each awaited before the next. A leader that moves or a broker
 * that goes away is looked up again; every error is retried (a live service waits for its broker,
 * it does not give up on it).
 *
 * With a receiver's `room`, each fetch asks for no more than the receiver can take now (in bytes,
 * at the records' size so far), and the next one waits while the last one's records fill that
 * room: what is fetched but not yet taken is bounded by the receiver, not by the fetch sizes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connectTo, type Connection } from './connection.ts';
import {
  API_FETCH,
  FETCH_VERSION,
  fetchRequest,
  hostPort,
  lookUpCluster,
  parseFetch,
  partitionError,
  RetriableError,
  type CommittedReaderOptions,
  type FetchedPartition,
  type FetchSettings,
} from './committed-reader.ts';
import { anyCompressed, completeBatches, visitCommittedRecords } from './record-batches.ts';

const OFFSET_OUT_OF_RANGE = 1;

export interface FollowedRecord {
  readonly offset: number;
  /** Views of the fetch response (or of a decompressed copy): nothing reuses their bytes, so keeping one keeps that response. */
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** Epoch milliseconds. */
  readonly timestamp: number;
}

/**
 * Makes the object a record is handed over as, straight from the fetched bytes (one object per
 * record, in the shape its receiver keeps): key and value are views, the headers start at
 * `headersAt` in `data` (readHeaders).
 */
export type RecordMaker<R> = (topic: string, partition: number, offset: number, key: Buffer | null, value: Buffer | null, timestamp: number, data: Buffer, headersAt: number) => R;

const followedRecord: RecordMaker<FollowedRecord> = (_topic, _partition, offset, key, value, timestamp) => ({ offset, key, value, timestamp });

export interface FollowedBatch<R = FollowedRecord> {
  readonly topic: string;
  readonly partition: number;
  /**
   * The committed records fetched (none when the fetch brought only transaction markers or aborted
   * records); the receiver's to keep. With `deferRecords` they are made when first read.
   */
  readonly records: R[];
  /** How many records `records` holds (or will hold, when made). */
  readonly count: number;
  /** Their keys' and values' bytes. */
  readonly bytes: number;
  /** With `deferRecords`: the batch in consecutive parts of at most that many records, each made when first read. */
  readonly parts?: readonly RecordsPart<R>[];
  /** Committed records left out by the options' `skip` (their offsets are in the batch, their records are not). */
  readonly skipped: number;
  /** The offset after what was fetched: where this partition is read on from. */
  readonly next: number;
  readonly highWatermark: number;
}

/** Consecutive records of a fetched batch, made when first read (see the follower's deferRecords). */
export interface RecordsPart<R> {
  /** The offset the part starts at (its first record's, or where the fetch started for the first part). */
  readonly from: number;
  /** The offset after it: where the next part starts (the batch's `next` for the last one). */
  readonly next: number;
  readonly count: number;
  readonly bytes: number;
  /** Made on first read, from the fetched bytes. */
  readonly records: R[];
  /** Lets the records made go: they are made again, from the fetched bytes, if read again. */
  release(): void;
}

/** How much more the receiver of the records can hold now, and when that grows (see CommittedFollower). */
export interface ReceiverRoom {
  /** Records it could take now without waiting (0: none); Infinity when unbounded. */
  records(): number;
  /** Resolves once it has taken records, so that its room may have grown. */
  freed(): Promise<void>;
}

/** What a record is taken to weigh, in bytes, until some were fetched. */
export const INITIAL_BYTES_PER_RECORD = 512;

/** The least a fetch asks for, whatever the room: a fetch brings at least one batch in any case. */
export const MIN_FETCH_BYTES = 64 * 1024;

/** A fetch's byte limits for room for `roomRecords` records of `bytesPerRecord` bytes: within [MIN_FETCH_BYTES, the settings]. */
export function fetchSizes(roomRecords: number, bytesPerRecord: number, settings: FetchSettings): FetchSettings {
  const wanted = Math.max(MIN_FETCH_BYTES, Math.ceil(Math.max(0, roomRecords) * Math.max(1, bytesPerRecord)));
  const maxBytes = Math.min(settings.maxBytes, wanted);
  return { maxWaitMs: settings.maxWaitMs, maxBytes, partitionMaxBytes: Math.min(settings.partitionMaxBytes, maxBytes) };
}

/** A fetch sent and the offsets it asked from. */
interface InFlight {
  readonly sent: Promise<Buffer>;
  readonly offsets: Map<string, Map<number, number>>;
}

/** How often the room is looked at again while the receiver is full, in case a freed() was missed. */
const ROOM_POLL_MS = 100;

/** Per topic, per partition: the offset to read from. */
export type Starts = ReadonlyMap<string, ReadonlyMap<number, number>>;

export class CommittedFollower<R = FollowedRecord> {
  private readonly options: CommittedReaderOptions;
  private readonly makeRecord: RecordMaker<R>;
  private readonly skip: ((topic: string, data: Buffer, headersAt: number) => boolean) | undefined;
  private readonly deferRecords: number | undefined;
  private readonly room: ReceiverRoom | undefined;
  /** The fetched records' size, on average (a moving one): what the room in records is in bytes. */
  private bytesPerRecord = INITIAL_BYTES_PER_RECORD;
  /** Turns the order partitions are asked for in, so that a small fetch does not always fill with the same one. */
  private turn = 0;
  private readonly deliver: (batch: FollowedBatch<R>) => Promise<void>;
  private readonly deliverFetch: ((batches: FollowedBatch<R>[]) => Promise<void>) | undefined;
  private readonly settings: FetchSettings;
  private readonly bootstrap: readonly { host: string; port: number }[];
  /** The partitions followed and the next offset of each, replaced by every assign(). */
  private positions = new Map<string, Map<number, number>>();
  private generation = 0;
  private stopped = false;
  private readonly connections = new Set<Connection>();
  private wake: () => void = () => undefined;
  private readonly loop: Promise<void>;
  /** The wait before the next attempt after a failure: back to its least after a fetch that worked. */
  private backoffMs = 100;

  /**
   * `deliver` gets each partition's fetched batches in order and is awaited before that fetch's
   * next partition is handed over; if it throws, what it was given is fetched again.
   */
  constructor(
    options: CommittedReaderOptions & {
      readonly makeRecord?: RecordMaker<R>;
      readonly room?: ReceiverRoom;
      /** Records the receiver does not want, told by their topic and headers (`headersAt`, see readHeaders): no object is made for them. */
      readonly skip?: ((topic: string, data: Buffer, headersAt: number) => boolean) | undefined;
      /**
       * Instead of `deliver`: a fetch's batches, every partition's at once, in one call (a receiver
       * that writes a fetch as one transaction). If it throws, the whole fetch is fetched again.
       */
      readonly deliverFetch?: ((batches: FollowedBatch<R>[]) => Promise<void>) | undefined;
      /**
       * Make a batch's records when the receiver first reads them, not when they are fetched (the
       * batch is counted at once, without an object per record), in `parts` of at most this many
       * records. A receiver that queues batches for a while then makes each part's records just
       * before it processes them, and can let them go once processed: they die young instead of
       * being promoted to the old generation while they wait.
       */
      readonly deferRecords?: number;
    },
    deliver: (batch: FollowedBatch<R>) => Promise<void>,
  ) {
    this.options = options;
    this.skip = options.skip;
    this.deferRecords = options.deferRecords;
    this.makeRecord = options.makeRecord ?? (followedRecord as unknown as RecordMaker<R>);
    this.room = options.room;
    this.deliver = deliver;
    this.deliverFetch = options.deliverFetch;
    this.settings = {
      maxWaitMs: options.maxWaitMs ?? 200,
      partitionMaxBytes: options.partitionMaxBytes ?? 2 * 1024 * 1024,
      maxBytes: options.maxBytes ?? 8 * 1024 * 1024,
    };
    this.bootstrap = options.brokers.map(hostPort);
    this.loop = this.run();
  }

  /** From now on follows exactly these partitions, each from its offset (an empty map: none). */
  assign(starts: Starts): void {
    this.generation++;
    this.positions = new Map([...starts].filter(([, partitions]) => partitions.size > 0).map(([topic, partitions]) => [topic, new Map(partitions)]));
    this.closeConnections();
    this.wake();
  }

  /** Stops following; resolves once a batch being handed over is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.closeConnections();
    this.wake();
    await this.loop;
  }

  private closeConnections(): void {
    for (const connection of this.connections) connection.close();
    this.connections.clear();
  }

  private connect(host: string, port: number): Connection {
    const connection = connectTo(this.options, host, port, (this.options.requestTimeoutMs ?? 30_000) + this.settings.maxWaitMs);
    this.connections.add(connection);
    return connection;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const generation = this.generation;
      const positions = this.positions;
      if (positions.size === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      try {
        const cluster = await lookUpCluster(this.bootstrap, [...positions.keys()], (host, port) => this.connect(host, port));
        const byLeader = new Map<number, Map<string, number[]>>();
        for (const [topic, partitions] of positions) {
          for (const partition of partitions.keys()) {
            const leader = cluster.leaders.get(topic)?.get(partition);
            if (leader === undefined) throw new RetriableError(`${topic} partition ${partition}: no leader`);
            let mine = byLeader.get(leader);
            if (mine === undefined) byLeader.set(leader, (mine = new Map()));
            mine.set(topic, [...(mine.get(topic) ?? []), partition]);
          }
        }
        if (generation !== this.generation) continue;
        const reads = [...byLeader].map(([id, partitions]) => {
          const broker = cluster.brokers.get(id);
          if (broker === undefined) throw new RetriableError(`broker ${id} leads partitions but is not in the metadata`);
          return { connection: this.connect(broker.host, broker.port), partitions };
        });
        // One leader's failure ends the others' reads too: all look the leaders up again.
        await Promise.all(
          reads.map(({ connection, partitions }) =>
            this.fromLeader(connection, partitions, positions, generation, reads.length).catch((error: unknown) => {
              for (const { connection } of reads) connection.close();
              throw error;
            }),
          ),
        );
      } catch (error) {
        if (this.stopped || generation !== this.generation) continue;
        this.options.onRetry?.(error instanceof Error ? error.message : String(error));
        const woken = new Promise<void>((resolve) => (this.wake = resolve));
        await Promise.race([sleep(this.backoffMs), woken]);
        this.backoffMs = Math.min(5_000, this.backoffMs * 2);
      } finally {
        this.closeConnections();
      }
    }
  }

  /**
   * Follows the partitions one leader leads until the assignment changes or it fails. Its fetches
   * ask for its share of the receiver's room (the room over `leaders`, each leader's reads asking at once).
   */
  private async fromLeader(connection: Connection, partitions: ReadonlyMap<string, readonly number[]>, positions: Map<string, Map<number, number>>, generation: number, leaders: number): Promise<void> {
    const current = () => generation === this.generation && !this.stopped;
    const all = [...partitions].flatMap(([topic, ps]) => ps.map((partition) => ({ topic, partition })));
    const request = (roomRecords: number): InFlight => {
      // In a turning order: a fetch smaller than what is there is filled from its first partitions on.
      const first = this.turn++ % all.length;
      const offsets = new Map<string, Map<number, number>>();
      for (let i = 0; i < all.length; i++) {
        const { topic, partition } = all[(first + i) % all.length]!;
        let at = offsets.get(topic);
        if (at === undefined) offsets.set(topic, (at = new Map()));
        at.set(partition, positions.get(topic)!.get(partition)!);
      }
      const settings = Number.isFinite(roomRecords) ? fetchSizes(roomRecords, this.bytesPerRecord, this.settings) : this.settings;
      const sent = connection.request(API_FETCH, FETCH_VERSION, fetchRequest(offsets, settings));
      sent.catch(() => undefined);
      return { sent, offsets };
    };
    /** Waits until the receiver has room again (or this follower is moved on), and gives this leader's share of it. */
    const roomNow = async (): Promise<number> => {
      if (this.room === undefined) return Number.POSITIVE_INFINITY;
      let room = this.room.records();
      while (room <= 0 && current()) {
        await Promise.race([this.room.freed(), sleep(ROOM_POLL_MS)]);
        room = this.room.records();
      }
      return room / leaders;
    };
    let inFlight: InFlight | undefined = request(await roomNow());
    while (current()) {
      const next: InFlight = inFlight ?? request(await roomNow());
      const sent: Promise<Buffer> = next.sent;
      const offsets: Map<string, Map<number, number>> = next.offsets;
      inFlight = undefined;
      if (!current()) return;
      const body: Buffer | undefined = await sent.catch((error: unknown) => {
        if (!current()) return undefined;
        throw error;
      });
      if (body === undefined || !current()) return;
      this.backoffMs = 100;
      const fetched: FetchedPartition[] = parseFetch(body).filter((f) => offsets.get(f.topic)?.has(f.partition));
      for (const f of fetched) {
        if (f.error === 0) continue;
        const from = offsets.get(f.topic)!.get(f.partition)!;
        if (f.error === OFFSET_OUT_OF_RANGE && f.logStartOffset >= 0 && from < f.logStartOffset) {
          // Deleted (retention) before it was read: on from the first record there is.
          this.options.onRetry?.(`${f.topic} partition ${f.partition}: offset ${from} was deleted; reading on from ${f.logStartOffset}`);
          positions.get(f.topic)!.set(f.partition, f.logStartOffset);
          continue;
        }
        throw partitionError(f, from);
      }
      // Where the next fetch starts is in the batch headers: it goes out before these records are decoded.
      const moved: FetchedPartition[] = [];
      /** How many offsets this fetch moved on by: at most the records it brings. */
      let brought = 0;
      for (const f of fetched) {
        if (f.error !== 0 || f.records === null) continue;
        const { nextOffset } = completeBatches(f.records);
        const at = positions.get(f.topic)!;
        const from = at.get(f.partition)!;
        if (nextOffset === undefined || nextOffset <= from) continue;
        brought += nextOffset - from;
        at.set(f.partition, nextOffset);
        moved.push(f);
      }
      // The next fetch goes out now unless these records fill the receiver's room: then it waits
      // (above) until the receiver has taken some.
      const left = this.room === undefined ? Number.POSITIVE_INFINITY : this.room.records() - brought;
      if (left > 0) inFlight = request(left / leaders);
      /** A fetched partition's records from where it was asked, as the receiver's batch. */
      const batchOf = (f: FetchedPartition): FollowedBatch<R> => {
        const from = offsets.get(f.topic)!.get(f.partition)!;
        const skip = this.skip;
        const make = (topic: string, partition: number, offset: number, data: Buffer, ks: number, kl: number, vs: number, vl: number, timestamp: number, headersAt: number): R =>
          this.makeRecord(topic, partition, offset, kl < 0 ? null : data.subarray(ks, ks + kl), vl < 0 ? null : data.subarray(vs, vs + vl), timestamp, data, headersAt);
        const next = positions.get(f.topic)!.get(f.partition)!;
        // A compressed batch would be decompressed again for each part: its records are made at once.
        const partRecords = this.deferRecords !== undefined && !anyCompressed(f.records!) ? Math.max(1, this.deferRecords) : undefined;
        let count = 0;
        let bytes = 0;
        let skipped = 0;
        let made: R[] | undefined;
        /** With parts: where each starts, its records and bytes. */
        const starts: { from: number; count: number; bytes: number }[] = [];
        visitCommittedRecords(f.records!, f.aborted, from, (offset, data, ks, kl, vs, vl, timestamp, headersAt) => {
          if (skip !== undefined && skip(f.topic, data, headersAt)) {
            skipped++;
            return;
          }
          const size = Math.max(0, kl) + Math.max(0, vl);
          count++;
          bytes += size;
          if (partRecords === undefined) {
            (made ??= []).push(make(f.topic, f.partition, offset, data, ks, kl, vs, vl, timestamp, headersAt));
            return;
          }
          let part = starts[starts.length - 1];
          if (part === undefined || part.count === partRecords) starts.push((part = { from: starts.length === 0 ? from : offset, count: 0, bytes: 0 }));
          part.count++;
          part.bytes += size;
        });
        if (count + skipped > 0) this.bytesPerRecord = 0.8 * this.bytesPerRecord + (0.2 * f.records!.length) / (count + skipped);
        if (partRecords === undefined || count === 0) return { topic: f.topic, partition: f.partition, records: made ?? [], count, bytes, skipped, next, highWatermark: f.highWatermark };
        const parts = starts.map((start, i): RecordsPart<R> => {
          const end = i + 1 < starts.length ? starts[i + 1]!.from : next;
          let records: R[] | undefined;
          return {
            from: start.from,
            next: end,
            count: start.count,
            bytes: start.bytes,
            get records(): R[] {
              if (records === undefined) {
                const list: R[] = [];
                visitCommittedRecords(
                  f.records!,
                  f.aborted,
                  start.from,
                  (offset, data, ks, kl, vs, vl, timestamp, headersAt) => {
                    if (skip === undefined || !skip(f.topic, data, headersAt)) list.push(make(f.topic, f.partition, offset, data, ks, kl, vs, vl, timestamp, headersAt));
                  },
                  end,
                );
                records = list;
              }
              return records;
            },
            release: () => {
              records = undefined;
            },
          };
        });
        return {
          topic: f.topic,
          partition: f.partition,
          get records(): R[] {
            return (made ??= parts.flatMap((part) => part.records));
          },
          count,
          bytes,
          parts,
          skipped,
          next,
          highWatermark: f.highWatermark,
        };
      };
      /** What this fetch brought from the index-th partition on is fetched again. */
      const rewind = (index: number) => {
        for (const g of moved.slice(index)) positions.get(g.topic)!.set(g.partition, offsets.get(g.topic)!.get(g.partition)!);
      };
      if (this.deliverFetch !== undefined) {
        if (!current()) return;
        if (moved.length > 0) {
          try {
            await this.deliverFetch(moved.map(batchOf));
          } catch (error) {
            rewind(0);
            throw error;
          }
        }
      } else for (let i = 0; i < moved.length; i++) {
        if (!current()) return;
        try {
          await this.deliver(batchOf(moved[i]!));
        } catch (error) {
          rewind(i);
          throw error;
        }
      }
    }
  }
}
