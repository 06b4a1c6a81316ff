/**
 * One connection to a Kafka broker speaking the wire protocol's framing: a request is a size, its
 * header (api key, version, correlation id, client id) and body; a response is a size, the
 * correlation id and its body. Requests may be in flight together; responses come in order.
 * Used by the committed-records reader (committed-reader.ts: Metadata and Fetch) and the lean
 * producer (transactional-producer.ts). A request of a flexible version (KIP-482) has a header with
 * tagged fields, and so has its response.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { authenticate, type SaslOptions } from './sasl.ts';

export class Writer {
  private buffer: Buffer;
  private at = 0;

  constructor(size = 256) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.at + n <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.at + n));
    this.buffer.copy(bigger, 0, 0, this.at);
    this.buffer = bigger;
  }

  int8(v: number): this {
    this.room(1);
    this.at = this.buffer.writeInt8(v, this.at);
    return this;
  }
  int16(v: number): this {
    this.room(2);
    this.at = this.buffer.writeInt16BE(v, this.at);
    return this;
  }
  int32(v: number): this {
    this.room(4);
    this.at = this.buffer.writeInt32BE(v, this.at);
    return this;
  }
  int64(v: number | bigint): this {
    this.room(8);
    this.at = this.buffer.writeBigInt64BE(BigInt(v), this.at);
    return this;
  }
  /** A non-nullable string (int16 length); null: -1. */
  string(v: string | null): this {
    if (v === null) return this.int16(-1);
    const n = Buffer.byteLength(v);
    this.int16(n);
    this.room(n);
    this.at += this.buffer.write(v, this.at);
    return this;
  }
  /** Bytes with an int32 length. */
  sizedBytes(v: Uint8Array): this {
    this.int32(v.length);
    this.room(v.length);
    this.buffer.set(v, this.at);
    this.at += v.length;
    return this;
  }
  array<T>(items: readonly T[], each: (w: this, item: T) => void): this {
    this.int32(items.length);
    for (const item of items) each(this, item);
    return this;
  }
  /** An unsigned varint (flexible versions' lengths and tag counts). */
  uvarint(v: number): this {
    this.room(5);
    while (v >= 0x80) {
      this.buffer[this.at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buffer[this.at++] = v;
    return this;
  }
  /** A compact (flexible versions') string; null: a nullable one's null. */
  compactString(v: string | null): this {
    if (v === null) return this.uvarint(0);
    const n = Buffer.byteLength(v);
    this.uvarint(n + 1);
    this.room(n);
    this.at += this.buffer.write(v, this.at);
    return this;
  }
  compactArray<T>(items: readonly T[], each: (w: this, item: T) => void): this {
    this.uvarint(items.length + 1);
    for (const item of items) each(this, item);
    return this;
  }
  /** No tagged fields. */
  noTags(): this {
    return this.uvarint(0);
  }
  bytes(): Buffer {
    return this.buffer.subarray(0, this.at);
  }
}

export class Reader {
  at = 0;
  readonly data: Buffer;
  constructor(data: Buffer) {
    this.data = data;
  }

  int8(): number {
    return this.data.readInt8((this.at += 1) - 1);
  }
  int16(): number {
    return this.data.readInt16BE((this.at += 2) - 2);
  }
  int32(): number {
    return this.data.readInt32BE((this.at += 4) - 4);
  }
  int64(): bigint {
    return this.data.readBigInt64BE((this.at += 8) - 8);
  }
  string(): string | null {
    const n = this.int16();
    if (n < 0) return null;
    return this.data.toString('utf8', this.at, (this.at += n));
  }
  /** Nullable bytes with an int32 length, as a view of the response. */
  bytes(): Buffer | null {
    const n = this.int32();
    if (n < 0) return null;
    return this.data.subarray(this.at, (this.at += n));
  }
  array<T>(each: (r: this) => T): T[] {
    const n = this.int32();
    const items: T[] = [];
    for (let i = 0; i < n; i++) items.push(each(this));
    return items;
  }
  uvarint(): number {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = this.data[this.at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
      if (shift > 28) throw new Error('an unsigned varint longer than 5 bytes');
    }
  }
  compactString(): string | null {
    const n = this.uvarint() - 1;
    if (n < 0) return null;
    return this.data.toString('utf8', this.at, (this.at += n));
  }
  compactArray<T>(each: (r: this) => T): T[] {
    const n = this.uvarint() - 1;
    const items: T[] = [];
    for (let i = 0; i < n; i++) items.push(each(this));
    return items;
  }
  /** Skips tagged fields (none of them is read here). */
  skipTags(): void {
    const count = this.uvarint();
    for (let i = 0; i < count; i++) {
      this.uvarint(); // tag
      this.at += this.uvarint();
    }
  }
}

export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
}

interface Pending {
  readonly correlationId: number;
  readonly resolve: (body: Buffer) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export interface ConnectionOptions {
  readonly host: string;
  readonly port: number;
  readonly clientId: string;
  readonly ssl: boolean;
  /** Authenticates every connection before its first request (wire/sasl.ts). */
  readonly sasl?: SaslOptions | undefined;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Told of every request as it is sent (diagnostics and tests). */
  readonly onRequest?: ((apiKey: number, correlationId: number) => void) | undefined;
}

/** What every lean client's connections share: who it is, TLS and SASL (CommittedReaderOptions, TransactionalProducerOptions). */
export interface ClientSettings {
  readonly clientId: string;
  readonly ssl?: boolean | undefined;
  readonly sasl?: SaslOptions | undefined;
}

/** A connection of a lean client to one broker (10 s to connect), each request answered within `requestTimeoutMs`. */
export function connectTo(client: ClientSettings, host: string, port: number, requestTimeoutMs: number, onRequest?: ConnectionOptions['onRequest']): Connection {
  return new Connection({ host, port, clientId: client.clientId, ssl: client.ssl ?? false, sasl: client.sasl, connectTimeoutMs: 10_000, requestTimeoutMs, onRequest });
}

/** Responses below this size are cut from Node's shared buffer pool; larger ones get their own memory. */
const POOLED_FRAME_BYTES = 4096;
/** What one read from the socket fills (TCP): reused for every read, never handed on. */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Cuts a byte stream into the protocol's frames (a 4-byte size, then that many bytes), copying each
 * frame into a buffer of exactly its size. The bytes it is given are never kept: a connection reads
 * into one reusable buffer, so a response costs one allocation of its own size, not a chunk per read
 * and a concatenation (a fetch of 2 MiB arrived as about 30 chunks of 64 KiB, each garbage for the
 * collector and a hole in the allocator's heap).
 */
export class FrameAssembler {
  private readonly sizeBytes = Buffer.allocUnsafe(4);
  private sizeHave = 0;
  private frame: Buffer | undefined;
  private frameHave = 0;

  /**
   * Takes bytes [start, end) of `data`; calls `onFrame` with each frame completed (without its
   * size). Stops, dropping the rest, when `onFrame` returns false.
   */
  push(data: Uint8Array, start: number, end: number, onFrame: (frame: Buffer) => boolean): void {
    let at = start;
    while (at < end) {
      if (this.frame === undefined) {
        const n = Math.min(4 - this.sizeHave, end - at);
        this.sizeBytes.set(data.subarray(at, at + n), this.sizeHave);
        this.sizeHave += n;
        at += n;
        if (this.sizeHave < 4) return;
        const size = this.sizeBytes.readInt32BE(0);
        if (size < 0) throw new ConnectionError(`a response of size ${size}`);
        this.frame = size < POOLED_FRAME_BYTES ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size);
        this.frameHave = 0;
      }
      const frame = this.frame;
      const n = Math.min(frame.length - this.frameHave, end - at);
      if (n > 0) frame.set(data.subarray(at, at + n), this.frameHave);
      this.frameHave += n;
      at += n;
      if (this.frameHave < frame.length) return;
      this.frame = undefined;
      this.sizeHave = 0;
      if (!onFrame(frame)) return;
    }
  }
}

export class Connection {
  private readonly socket: Socket;
  private readonly ready: Promise<void>;
  private readonly pending: Pending[] = [];
  private correlationId = 0;
  private readonly frames = new FrameAssembler();
  private readonly onFrame = (frame: Buffer): boolean => this.response(frame);
  private closedWith: Error | undefined;
  private readonly options: ConnectionOptions;
  /** While connecting: ends the wait for the connection with this error. */
  private abandonConnect: ((error: Error) => void) | undefined;

  constructor(options: ConnectionOptions) {
    this.options = options;
    const { host, port, ssl, connectTimeoutMs } = options;
    const where = `${host}:${port}`;
    // TCP reads into one reusable buffer (no allocation per read); TLS hands over its chunks.
    this.socket = ssl
      ? connectTls({ host, port, servername: host })
      : connectTcp({ host, port, onread: { buffer: Buffer.allocUnsafeSlow(READ_BUFFER_BYTES), callback: (bytes: number, buffer: Uint8Array) => this.received(buffer, bytes) } });
    this.socket.setNoDelay(true);
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new ConnectionError(`connecting to ${where} timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
      // Closed before it connected (a follower reassigned, a reader stopped): a socket destroyed
      // while connecting emits neither 'connect' nor 'error', so the close itself ends the wait.
      // Without this a request waited for the connect timeout (10 s) on a connection already
      // closed: one stage of an instance sat idle that long after a rebalance (docs/performance.md).
      this.abandonConnect = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      this.socket.once(ssl ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        this.abandonConnect = undefined;
        resolve();
      });
      this.socket.once('error', (error) => {
        clearTimeout(timer);
        this.abandonConnect = undefined;
        reject(new ConnectionError(`connection to ${where}: ${error.message}`));
      });
    });
    const { sasl } = options;
    // With SASL, nothing is sent before the handshake and the exchange (a failed one closes the connection).
    this.ready =
      sasl === undefined
        ? connected
        : connected.then(() =>
            authenticate((apiKey, apiVersion, body) => this.send(apiKey, apiVersion, body, false), sasl, where).catch((error: unknown) => {
              this.fail(error instanceof Error ? error : new ConnectionError(String(error)));
              throw error;
            }),
          );
    this.ready.catch(() => undefined);
    this.socket.on('error', (error) => this.fail(new ConnectionError(`connection to ${where}: ${error.message}`)));
    this.socket.on('close', () => this.fail(new ConnectionError(`connection to ${where} closed`)));
    if (ssl) this.socket.on('data', (chunk: Buffer) => this.received(chunk, chunk.length));
  }

  get broken(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * Sends a request; resolves with the response's body (after the correlation id, and for a
   * flexible version after the response header's tagged fields too).
   */
  async request(apiKey: number, apiVersion: number, body: Buffer, flexible = false): Promise<Buffer> {
    await this.ready;
    return this.send(apiKey, apiVersion, body, flexible);
  }

  /** request() on a connection that is connected (and, with SASL, authenticated or being authenticated). */
  private async send(apiKey: number, apiVersion: number, body: Buffer, flexible: boolean): Promise<Buffer> {
    if (this.closedWith !== undefined) throw this.closedWith;
    const correlationId = (this.correlationId = (this.correlationId + 1) | 0);
    this.options.onRequest?.(apiKey, correlationId);
    const writer = new Writer(64).int32(0).int16(apiKey).int16(apiVersion).int32(correlationId).string(this.options.clientId);
    const header = (flexible ? writer.noTags() : writer).bytes();
    header.writeInt32BE(header.length - 4 + body.length, 0);
    const response = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new ConnectionError(`request ${apiKey} v${apiVersion} to ${this.options.host}:${this.options.port}: no response within ${this.options.requestTimeoutMs} ms`)),
        this.options.requestTimeoutMs,
      );
      this.pending.push({ correlationId, resolve, reject, timer });
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(body);
      this.socket.uncork();
    });
    if (!flexible) return response;
    const reader = new Reader(await response);
    reader.skipTags();
    return reader.data.subarray(reader.at);
  }

  close(): void {
    this.fail(new ConnectionError('connection closed'));
  }

  private fail(error: Error): void {
    if (this.closedWith === undefined) this.closedWith = error;
    this.abandonConnect?.(this.closedWith);
    this.abandonConnect = undefined;
    this.socket.destroy();
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(this.closedWith);
    }
  }

  private received(data: Uint8Array, bytes: number): boolean {
    try {
      this.frames.push(data, 0, bytes, this.onFrame);
    } catch (error) {
      this.fail(error instanceof Error ? error : new ConnectionError(String(error)));
    }
    return true;
  }

  /** One response: to the request waiting for it (responses come in the order of the requests). */
  private response(frame: Buffer): boolean {
    if (this.closedWith !== undefined) return false;
    const correlationId = frame.readInt32BE(0);
    const p = this.pending.shift();
    if (p === undefined || p.correlationId !== correlationId) {
      this.fail(new ConnectionError(`a response with correlation id ${correlationId} that no request was waiting for`));
      return false;
    }
    clearTimeout(p.timer);
    p.resolve(frame.subarray(4));
    return true;
  }
}
