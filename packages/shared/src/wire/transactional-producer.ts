/**
 * A lean transactional producer for the exactly-once stages: Kafka's transaction protocol on
 * connections of its own (FindCoordinator, InitProducerId, AddPartitionsToTxn, Produce,
 * AddOffsetsToTxn, TxnOffsetCommit with the group member and generation of KIP-447, EndTxn), with
 * the records encoded straight into their Produce requests (produce.ts): no object per record.
 *
 * It is strict, because the runner around it is what recovers: a request that retrying can mend
 * (a coordinator moving or loading, CONCURRENT_TRANSACTIONS right after a commit, a lost
 * connection before a control request was answered) is retried for a while; anything else,
 * and any Produce that is not acknowledged, fails the transaction and leaves this producer unusable.
 * The runner then aborts, opens a new producer with the same transactional id (InitProducerId
 * settles the old transaction: fences it, and aborts it unless its commit had begun) and fetches
 * the inputs again from the committed offsets. Plaintext or TLS; a cluster that needs SASL uses the
 * Kafka client's producer (kafka.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { hostPort, lookUpCluster, RetriableError, type Cluster } from './committed-reader.ts';
import { connectTo, ConnectionError, type Connection } from './connection.ts';
import type { SaslOptions } from './sasl.ts';
import { COORDINATOR_MOVED, KafkaProtocolError, TRY_AGAIN } from './kafka-errors.ts';
import { API_PRODUCE, encodeBatch, keyPartition, parseProduce, PRODUCE_VERSION, produceRequest, RecordSizes, type BatchHeader, type BatchOf, type EncodedBatch, type OutgoingRecord } from './produce.ts';
import {
  ADD_OFFSETS_TO_TXN_VERSION,
  ADD_PARTITIONS_TO_TXN_VERSION,
  addOffsetsToTxnRequest,
  addPartitionsToTxnRequest,
  API_ADD_OFFSETS_TO_TXN,
  API_ADD_PARTITIONS_TO_TXN,
  API_END_TXN,
  API_FIND_COORDINATOR,
  API_INIT_PRODUCER_ID,
  API_TXN_OFFSET_COMMIT,
  COORDINATOR_GROUP,
  COORDINATOR_TRANSACTION,
  END_TXN_VERSION,
  endTxnRequest,
  FIND_COORDINATOR_VERSION,
  findCoordinatorRequest,
  INIT_PRODUCER_ID_VERSION,
  initProducerIdRequest,
  parseAddPartitionsToTxn,
  parseErrorCode,
  parseFindCoordinator,
  parseInitProducerId,
  parseTxnOffsetCommit,
  TXN_OFFSET_COMMIT_VERSION,
  txnOffsetCommitRequest,
  type GroupOffsets,
  type ProducerIdentity,
} from './transaction-requests.ts';

export type { GroupOffsets } from './transaction-requests.ts';

/** A record for a topic: to the given partition, else to its key's (murmur2), else round robin. */
export interface TopicRecord extends OutgoingRecord {
  readonly topic: string;
  readonly partition?: number | undefined;
}

export interface TransactionalProducerOptions {
  /** host:port of one or more brokers to look the cluster up from. */
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly ssl?: boolean | undefined;
  /** SASL authentication of every connection (wire/sasl.ts). */
  readonly sasl?: SaslOptions | undefined;
  readonly transactionalId: string;
  /** After this long the coordinator aborts a transaction left open (a crashed producer's). */
  readonly transactionTimeoutMs: number;
  readonly requestTimeoutMs?: number | undefined;
  /** Most bytes of one partition's batch in a request: below the broker's message.max.bytes (1 MiB by default). */
  readonly maxBatchBytes?: number | undefined;
  /** How long a request that retrying can mend is retried before the call fails. */
  readonly retryForMs?: number | undefined;
  /** Told of every request as it is sent, by its API's name (diagnostics and tests). */
  readonly onRequest?: ((request: { readonly apiName: string; readonly correlationId: number }) => void) | undefined;
}

const API_NAMES = new Map([
  [API_PRODUCE, 'Produce'],
  [3, 'Metadata'],
  [API_FIND_COORDINATOR, 'FindCoordinator'],
  [API_INIT_PRODUCER_ID, 'InitProducerId'],
  [API_ADD_PARTITIONS_TO_TXN, 'AddPartitionsToTxn'],
  [API_ADD_OFFSETS_TO_TXN, 'AddOffsetsToTxn'],
  [API_END_TXN, 'EndTxn'],
  [API_TXN_OFFSET_COMMIT, 'TxnOffsetCommit'],
]);

/** A broker as a coordinator lookup gives it. */
interface Node {
  readonly host: string;
  readonly port: number;
}

const nodeKey = (node: Node) => `${node.host}:${node.port}`;
const partitionKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;
const PRODUCE_TIMEOUT_MS = 30_000;
const CONCURRENT_TRANSACTIONS_RETRY_MS = 2;
const MAX_SEQUENCE = 0x7fffffff;

/** Any broker error a retry can mend, or a connection lost before its answer (for idempotent control requests only). */
function retriable(error: unknown): boolean {
  if (error instanceof ConnectionError || error instanceof RetriableError) return true;
  const type = (error as { type?: unknown }).type;
  return typeof type === 'string' && (TRY_AGAIN.has(type) || COORDINATOR_MOVED.has(type));
}

export class TransactionalProducer {
  private readonly options: TransactionalProducerOptions;
  private readonly bootstrap: readonly Node[];
  private readonly connections = new Map<string, Connection>();
  private readonly sizes = new RecordSizes();
  private identity: ProducerIdentity | undefined;
  /** The next sequence number of each partition written in this producer's epoch. */
  private readonly sequences = new Map<string, number>();
  private cluster: Cluster | undefined;
  private transactionCoordinator: Node | undefined;
  private readonly groupCoordinators = new Map<string, Node>();
  private readonly roundRobin = new Map<string, number>();
  private open: Transaction | undefined;
  /** Why this producer cannot be used any more (a produce that failed: its sequence numbers are unknown). */
  private broken: Error | undefined;
  private closed = false;

  constructor(options: TransactionalProducerOptions) {
    this.options = options;
    this.bootstrap = options.brokers.map(hostPort);
    const observe = options.onRequest;
    this.onRequest = observe === undefined ? undefined : (apiKey, correlationId) => observe({ apiName: API_NAMES.get(apiKey) ?? `api ${apiKey}`, correlationId });
  }

  private readonly onRequest: ((apiKey: number, correlationId: number) => void) | undefined;

  private newConnection(node: Node): Connection {
    return connectTo(this.options, node.host, node.port, this.options.requestTimeoutMs ?? 30_000, this.onRequest);
  }

  get transactionalId(): string {
    return this.options.transactionalId;
  }

  /**
   * InitProducerId: this producer gets the transactional id's producer id and a new epoch, which
   * fences every earlier producer with that id; the coordinator settles the id's open transaction
   * first (completes a commit that had begun, aborts the rest).
   */
  async init(): Promise<void> {
    const body = initProducerIdRequest(this.options.transactionalId, this.options.transactionTimeoutMs);
    const answer = await this.retrying(async () => {
      const response = parseInitProducerId(await this.toTransactionCoordinator(API_INIT_PRODUCER_ID, INIT_PRODUCER_ID_VERSION, body));
      if (response.error !== 0) throw new KafkaProtocolError(response.error, `InitProducerId for ${this.options.transactionalId}`);
      return response;
    });
    this.identity = { transactionalId: this.options.transactionalId, producerId: answer.producerId, producerEpoch: answer.producerEpoch };
    this.sequences.clear();
    this.broken = undefined;
  }

  /** Starts a transaction (nothing is sent until records or offsets are). */
  begin(): Transaction {
    if (this.identity === undefined) throw new Error('the producer is not initialised (init())');
    if (this.broken !== undefined) throw this.broken;
    if (this.open !== undefined) throw new Error('a transaction is open already');
    this.open = new Transaction(this, this.identity);
    return this.open;
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }

  /** @internal The transaction ended (committed, aborted or failed). */
  ended(transaction: Transaction): void {
    if (this.open === transaction) this.open = undefined;
  }

  /** @internal */
  breakWith(error: Error): void {
    this.broken ??= error;
  }

  private connection(node: Node): Connection {
    if (this.closed) throw new ConnectionError('the producer is closed');
    const key = nodeKey(node);
    let connection = this.connections.get(key);
    if (connection === undefined || connection.broken) {
      connection = this.newConnection(node);
      this.connections.set(key, connection);
    }
    return connection;
  }

  /** @internal Retries `attempt` while it fails in a way a retry can mend (see the file comment). */
  async retrying<T>(attempt: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.retryForMs ?? 30_000);
    let backoffMs = 5;
    for (;;) {
      try {
        return await attempt();
      } catch (error) {
        if (this.closed || !retriable(error) || Date.now() > deadline) throw error;
        const type = (error as { type?: string }).type;
        if (error instanceof ConnectionError || error instanceof RetriableError || (type !== undefined && COORDINATOR_MOVED.has(type))) {
          this.transactionCoordinator = undefined;
          this.groupCoordinators.clear();
          this.cluster = undefined;
        }
        // CONCURRENT_TRANSACTIONS: the previous transaction's markers are still being written, which
        // takes milliseconds; waiting longer each time (5, 10, 20, 40, 80 ms…) added up to the
        // slowest transactions' time. Asked again at a short, steady pace instead (as Kafka's Java
        // producer does for AddPartitionsToTxn); everything else backs off.
        if (type === 'CONCURRENT_TRANSACTIONS') {
          this.concurrentRetries++;
          await sleep(CONCURRENT_TRANSACTIONS_RETRY_MS);
          continue;
        }
        await sleep(backoffMs);
        backoffMs = Math.min(200, backoffMs * 2);
      }
    }
  }

  /** How many times a request was answered CONCURRENT_TRANSACTIONS and asked again (diagnostics). */
  concurrentRetries = 0;

  private async findCoordinator(key: string, keyType: number): Promise<Node> {
    const bootstrap = this.bootstrap[Math.floor(Math.random() * this.bootstrap.length)]!;
    const answer = parseFindCoordinator(await this.connection(bootstrap).request(API_FIND_COORDINATOR, FIND_COORDINATOR_VERSION, findCoordinatorRequest(key, keyType)));
    if (answer.error !== 0) throw new KafkaProtocolError(answer.error, `FindCoordinator for ${key}${answer.message === null ? '' : ` (${answer.message})`}`);
    return { host: answer.host, port: answer.port };
  }

  /** @internal */
  async toTransactionCoordinator(apiKey: number, version: number, body: Buffer, flexible = false): Promise<Buffer> {
    this.transactionCoordinator ??= await this.findCoordinator(this.options.transactionalId, COORDINATOR_TRANSACTION);
    return this.connection(this.transactionCoordinator).request(apiKey, version, body, flexible);
  }

  /** @internal */
  async toGroupCoordinator(groupId: string, apiKey: number, version: number, body: Buffer, flexible = false): Promise<Buffer> {
    let node = this.groupCoordinators.get(groupId);
    if (node === undefined) this.groupCoordinators.set(groupId, (node = await this.findCoordinator(groupId, COORDINATOR_GROUP)));
    return this.connection(node).request(apiKey, version, body, flexible);
  }

  /** @internal The cluster's brokers, and the leaders and partition counts of these topics. */
  async clusterOf(topics: readonly string[]): Promise<Cluster> {
    const known = this.knownCluster(topics);
    if (known !== undefined) return known;
    const wanted = new Set([...topics, ...(this.cluster?.partitionCounts.keys() ?? [])]);
    this.cluster = await lookUpCluster(this.bootstrap, [...wanted], (host, port) => this.newConnection({ host, port }));
    return this.cluster;
  }

  /** @internal The cluster as last looked up, if it knows these topics (else undefined: clusterOf). */
  knownCluster(topics: readonly string[]): Cluster | undefined {
    return this.cluster !== undefined && topics.every((t) => this.cluster!.partitionCounts.has(t)) ? this.cluster : undefined;
  }

  /** @internal A batch encoded (producers take turns: the sizes are the producer's). */
  encode(batch: BatchOf, header: BatchHeader): Buffer {
    return encodeBatch(batch, header, this.sizes);
  }

  /** @internal Forgets the leaders (a produce found one moved). */
  forgetCluster(): void {
    this.cluster = undefined;
  }

  /** @internal Which partition a record goes to. */
  partitionOf(record: TopicRecord, cluster: Cluster): number {
    if (record.partition !== undefined) return record.partition;
    const count = cluster.partitionCounts.get(record.topic)!;
    if (record.key !== null) return keyPartition(record.key, count);
    const led = [...(cluster.leaders.get(record.topic)?.keys() ?? [])];
    const turn = (this.roundRobin.get(record.topic) ?? Math.floor(Math.random() * 1_000)) + 1;
    this.roundRobin.set(record.topic, turn);
    return led.length > 0 ? led[turn % led.length]! : turn % count;
  }

  /** @internal Takes `count` sequence numbers of a partition: the first of them. */
  takeSequence(topic: string, partition: number, count: number): number {
    const key = partitionKey(topic, partition);
    const next = this.sequences.get(key) ?? 0;
    this.sequences.set(key, (next + count) % (MAX_SEQUENCE + 1));
    return next;
  }

  /** @internal Sends one Produce request; returns each partition's error code (0: appended). */
  async produce(node: Node, topics: ReadonlyMap<string, readonly EncodedBatch[]>): Promise<Map<string, number>> {
    const body = produceRequest(this.options.transactionalId, PRODUCE_TIMEOUT_MS, topics);
    const response = await this.connection(node).request(API_PRODUCE, PRODUCE_VERSION, body);
    return new Map(parseProduce(response).map((o) => [partitionKey(o.topic, o.partition), o.error]));
  }

  /** @internal */
  get maxBatchBytes(): number {
    return this.options.maxBatchBytes ?? 900 * 1024;
  }

  /** @internal */
  get retryForMs(): number {
    return this.options.retryForMs ?? 30_000;
  }
}

/** A batch of one partition to produce, and its place among that partition's batches of one send. */
interface Unit {
  readonly topic: string;
  readonly round: number;
  readonly batch: EncodedBatch;
}

/** A unit not acknowledged: the broker's error, or why its outcome is unknown. */
interface Failed {
  readonly unit: Unit;
  readonly error: KafkaProtocolError | undefined;
  readonly failure: Error | undefined;
}

/** The broker already has the batch: acknowledged. */
const DUPLICATE_SEQUENCE_NUMBER = 46;

/**
 * Produce errors after which the same batch (same sequence numbers) may be sent again: it was not
 * appended, or it was and the broker will answer the copy DUPLICATE_SEQUENCE_NUMBER.
 */
const RESEND_SAFE = new Set([3, 5, 6, 7, 13, 19, 20, 56, 74, 75]);

/** Upper bound of a record's bytes in a batch, cheap: text counted at 3 bytes a character (UTF-8's most for a UTF-16 unit). */
function roughBytes(record: OutgoingRecord): number {
  const size = (v: string | Buffer | null) => (v === null ? 0 : typeof v === 'string' ? 3 * v.length : v.length);
  let bytes = 24 + size(record.key) + size(record.value);
  if (record.headers !== undefined) for (const name in record.headers) bytes += 10 + 3 * name.length + size(record.headers[name]!);
  return bytes;
}

/** The exact bytes of a record in a batch at an offset delta of at most 2^21 (see RecordSizes; a bound, for splitting). */
function exactBytes(record: OutgoingRecord): number {
  const size = (v: string | Buffer | null) => (v === null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : v.length);
  let bytes = 21 + size(record.key) + size(record.value);
  if (record.headers !== undefined) for (const name in record.headers) bytes += 10 + Buffer.byteLength(name) + size(record.headers[name]!);
  return bytes;
}

/**
 * One transaction: records sent in any number of calls, offsets for groups, then commit or abort.
 * A send may overlap sendOffsets but not another send (a partition's sequence numbers are taken in
 * call order, before the partition is added to the transaction, so a second send could overtake the
 * first); commit and abort wait for nothing (their caller has awaited the sends).
 */
export class Transaction {
  private readonly producer: TransactionalProducer;
  private readonly identity: ProducerIdentity;
  /** Partitions added to the transaction (AddPartitionsToTxn answered). */
  private readonly added = new Set<string>();
  /** Groups whose offsets' partition was added (AddOffsetsToTxn answered). */
  private readonly groups = new Set<string>();
  private ended = false;

  constructor(producer: TransactionalProducer, identity: ProducerIdentity) {
    this.producer = producer;
    this.identity = identity;
  }

  /**
   * Sends records in the transaction; resolves once every one is acknowledged by its leader. The
   * records are encoded into their batches before this returns (when the cluster's leaders are
   * known, as they are after the first send) and not held after that: a batch sent again is sent
   * as encoded. Records held until the broker answers outlived the young generation and were
   * promoted, to be collected by a full collection.
   */
  send(records: readonly TopicRecord[]): Promise<void> {
    if (this.ended) return Promise.reject(new Error('the transaction has ended'));
    if (records.length === 0) return Promise.resolve();
    const producer = this.producer;
    const topics = [...new Set(records.map((r) => r.topic))];
    const known = producer.knownCluster(topics);
    if (known !== undefined) return this.encodedAndDelivered(records, topics, known);
    return producer.retrying(() => producer.clusterOf(topics)).then((cluster) => {
      if (this.ended) throw new Error('the transaction has ended');
      return this.encodedAndDelivered(records, topics, cluster);
    });
  }

  private encodedAndDelivered(records: readonly TopicRecord[], topics: readonly string[], cluster: Cluster): Promise<void> {
    let units: ReturnType<Transaction['encoded']>;
    try {
      units = this.encoded(records, cluster);
    } catch (error) {
      // Sequence numbers may have been taken for records never sent: this producer is done.
      this.producer.breakWith(error instanceof Error ? error : new Error(String(error)));
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.deliver(units, topics, cluster);
  }

  /**
   * Records as the batches to send, each with its sequence numbers (taken once: a batch sent again
   * keeps them, so the broker drops a copy it has already appended), and the partitions not yet
   * added to the transaction.
   */
  private encoded(records: readonly TopicRecord[], cluster: Cluster): { units: Unit[]; fresh: { topic: string; partition: number }[] } {
    const producer = this.producer;
    // Each partition's records, in order.
    const byPartition = new Map<string, { topic: string; partition: number; records: TopicRecord[] }>();
    for (const record of records) {
      const partition = producer.partitionOf(record, cluster);
      const key = partitionKey(record.topic, partition);
      let entry = byPartition.get(key);
      if (entry === undefined) byPartition.set(key, (entry = { topic: record.topic, partition, records: [] }));
      entry.records.push(record);
    }
    const fresh = [...byPartition].filter(([key]) => !this.added.has(key)).map(([, { topic, partition }]) => ({ topic, partition }));
    // Batches within maxBatchBytes.
    const timestamp = Date.now();
    const units: Unit[] = [];
    for (const { topic, partition, records: list } of byPartition.values()) {
      let round = 0;
      for (const [start, end] of this.cut(list)) {
        const header = { producerId: this.identity.producerId, producerEpoch: this.identity.producerEpoch, baseSequence: producer.takeSequence(topic, partition, end - start), transactional: true, timestamp };
        units.push({ topic, round: round++, batch: { partition, bytes: producer.encode({ records: list, start, end }, header) } });
      }
    }
    return { units, fresh };
  }

  /** Adds the new partitions to the transaction, then sends the batches until every one is acknowledged. */
  private async deliver({ units, fresh }: { units: Unit[]; fresh: { topic: string; partition: number }[] }, topics: readonly string[], cluster: Cluster): Promise<void> {
    const producer = this.producer;
    let pending = units;
    const deadline = Date.now() + producer.retryForMs;
    let leaders = cluster;
    let backoffMs = 10;
    try {
      if (fresh.length > 0) await this.addPartitions(fresh);
      for (let attempt = 0; ; attempt++) {
        // The first time all at once; a retry round after round, so that a partition's batches reach its leader in order.
        const failed = attempt === 0 ? await this.produceUnits(pending, leaders) : await this.produceInRounds(pending, leaders);
        if (failed.length === 0) return;
        const fatal = failed.find((f) => f.error !== undefined && !RESEND_SAFE.has(f.error.code));
        if (fatal !== undefined || Date.now() > deadline) throw failed.find((f) => f.error !== undefined)?.error ?? failed[0]!.failure;
        pending = failed.map((f) => f.unit);
        await sleep(backoffMs);
        backoffMs = Math.min(500, backoffMs * 2);
        producer.forgetCluster();
        leaders = await producer.retrying(() => producer.clusterOf(topics));
      }
    } catch (error) {
      // Sequence numbers were taken for records whose fate is unknown (or never sent): this producer is done.
      producer.breakWith(error instanceof Error ? error : new Error(String(error)));
      producer.forgetCluster();
      throw error;
    }
  }

  /** Sends every unit (requests per leader and round, all at once); returns those not acknowledged. */
  private async produceUnits(units: readonly Unit[], cluster: Cluster): Promise<Failed[]> {
    const requests = new Map<number, Map<string, Unit[]>[]>();
    const failed: Failed[] = [];
    for (const unit of units) {
      const leader = cluster.leaders.get(unit.topic)?.get(unit.batch.partition);
      if (leader === undefined || !cluster.brokers.has(leader)) {
        failed.push({ unit, error: new KafkaProtocolError(5, `producing to ${unit.topic}-${unit.batch.partition}`), failure: undefined });
        continue;
      }
      let rounds = requests.get(leader);
      if (rounds === undefined) requests.set(leader, (rounds = []));
      const request = (rounds[unit.round] ??= new Map());
      let list = request.get(unit.topic);
      if (list === undefined) request.set(unit.topic, (list = []));
      list.push(unit);
    }
    await Promise.all(
      [...requests].flatMap(([leader, rounds]) =>
        rounds.map(async (request) => {
          const topics = new Map([...request].map(([topic, list]) => [topic, list.map((u) => u.batch)]));
          try {
            const outcomes = await this.producer.produce(cluster.brokers.get(leader)!, topics);
            for (const list of request.values()) {
              for (const unit of list) {
                const code = outcomes.get(partitionKey(unit.topic, unit.batch.partition));
                if (code === undefined) failed.push({ unit, error: undefined, failure: new Error(`the Produce response left out ${unit.topic}-${unit.batch.partition}`) });
                else if (code !== 0 && code !== DUPLICATE_SEQUENCE_NUMBER) failed.push({ unit, error: new KafkaProtocolError(code, `producing to ${unit.topic}-${unit.batch.partition}`), failure: undefined });
              }
            }
          } catch (error) {
            // The connection failed: whether these were appended is unknown, and sending them again is safe.
            if (!(error instanceof ConnectionError)) throw error;
            for (const list of request.values()) for (const unit of list) failed.push({ unit, error: undefined, failure: error });
          }
        }),
      ),
    );
    return failed;
  }

  /** Sends the units round after round (each round's requests together); returns those not acknowledged, later rounds included untried. */
  private async produceInRounds(units: readonly Unit[], cluster: Cluster): Promise<Failed[]> {
    const rounds = [...new Set(units.map((u) => u.round))].sort((a, b) => a - b);
    for (let i = 0; i < rounds.length; i++) {
      const failed = await this.produceUnits(units.filter((u) => u.round === rounds[i]), cluster);
      if (failed.length > 0) {
        const untried = units.filter((u) => u.round > rounds[i]!).map((unit) => ({ unit, error: undefined, failure: new Error('not tried') }));
        return [...failed, ...untried];
      }
    }
    return [];
  }

  /** Where a partition's records are cut into batches of at most maxBatchBytes: [start, end) pairs. */
  private cut(list: readonly TopicRecord[]): [number, number][] {
    const limit = this.producer.maxBatchBytes;
    let rough = 0;
    for (const record of list) rough += roughBytes(record);
    if (rough <= limit) return [[0, list.length]];
    const cuts: [number, number][] = [];
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < list.length; i++) {
      const size = exactBytes(list[i]!);
      if (i > start && bytes + size > limit) {
        cuts.push([start, i]);
        start = i;
        bytes = 0;
      }
      bytes += size;
    }
    cuts.push([start, list.length]);
    return cuts;
  }

  private async addPartitions(entries: readonly { topic: string; partition: number }[]): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of entries) {
      let list = byTopic.get(topic);
      if (list === undefined) byTopic.set(topic, (list = []));
      list.push(partition);
    }
    const body = addPartitionsToTxnRequest(this.identity, byTopic);
    await this.producer.retrying(async () => {
      const results = parseAddPartitionsToTxn(await this.producer.toTransactionCoordinator(API_ADD_PARTITIONS_TO_TXN, ADD_PARTITIONS_TO_TXN_VERSION, body));
      // OPERATION_NOT_ATTEMPTED names the partitions held back by another one's error: that one decides.
      const failed = results.find((r) => r.error !== 0 && r.error !== 55) ?? results.find((r) => r.error !== 0);
      if (failed !== undefined) throw new KafkaProtocolError(failed.error, `AddPartitionsToTxn ${failed.topic}-${failed.partition}`);
    });
    for (const { topic, partition } of entries) this.added.add(partitionKey(topic, partition));
  }

  /** Commits a group's offsets with the transaction (AddOffsetsToTxn once per group, then TxnOffsetCommit). */
  async sendOffsets(offsets: GroupOffsets): Promise<void> {
    if (this.ended) throw new Error('the transaction has ended');
    const producer = this.producer;
    if (!this.groups.has(offsets.groupId)) {
      const body = addOffsetsToTxnRequest(this.identity, offsets.groupId);
      await producer.retrying(async () => {
        const error = parseErrorCode(await producer.toTransactionCoordinator(API_ADD_OFFSETS_TO_TXN, ADD_OFFSETS_TO_TXN_VERSION, body));
        if (error !== 0) throw new KafkaProtocolError(error, `AddOffsetsToTxn for group ${offsets.groupId}`);
      });
      this.groups.add(offsets.groupId);
    }
    const body = txnOffsetCommitRequest(this.identity, offsets);
    await producer.retrying(async () => {
      const results = parseTxnOffsetCommit(await producer.toGroupCoordinator(offsets.groupId, API_TXN_OFFSET_COMMIT, TXN_OFFSET_COMMIT_VERSION, body, true));
      const failed = results.find((r) => r.error !== 0);
      if (failed !== undefined) throw new KafkaProtocolError(failed.error, `TxnOffsetCommit of group ${offsets.groupId} for ${failed.topic}-${failed.partition}`);
    });
  }

  commit(): Promise<void> {
    return this.end(true);
  }

  abort(): Promise<void> {
    return this.end(false);
  }

  private async end(commit: boolean): Promise<void> {
    if (this.ended) throw new Error('the transaction has ended');
    this.ended = true;
    try {
      // Nothing was added: there is no transaction at the coordinator to end.
      if (this.added.size === 0 && this.groups.size === 0) return;
      const body = endTxnRequest(this.identity, commit);
      await this.producer.retrying(async () => {
        const error = parseErrorCode(await this.producer.toTransactionCoordinator(API_END_TXN, END_TXN_VERSION, body));
        if (error !== 0) throw new KafkaProtocolError(error, `EndTxn (${commit ? 'commit' : 'abort'}) for ${this.identity.transactionalId}`);
      });
    } catch (error) {
      this.producer.breakWith(error instanceof Error ? error : new Error(String(error)));
      throw error;
    } finally {
      this.producer.ended(this);
    }
  }
}
