import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Connection, ConnectionError, FrameAssembler } from './connection.ts';

/** A frame on the wire: its size, then its bytes. */
const framed = (body: Buffer): Buffer => {
  const size = Buffer.allocUnsafe(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
};

/** Bodies of sizes around the pooled/own-memory boundary and the read buffer's size. */
const bodies = [0, 1, 4, 100, 4095, 4096, 70_000, 3].map((n, i) => Buffer.alloc(n, i + 1));
const stream = Buffer.concat(bodies.map(framed));

/** Feeds `stream` in pieces of `piece` bytes through one reused buffer, as a socket's reads do. */
function feed(piece: number): Buffer[] {
  const frames: Buffer[] = [];
  const assembler = new FrameAssembler();
  const reused = Buffer.alloc(piece);
  for (let at = 0; at < stream.length; at += piece) {
    const n = stream.copy(reused, 0, at, Math.min(at + piece, stream.length));
    assembler.push(reused, 0, n, (frame) => {
      frames.push(frame);
      return true;
    });
    reused.fill(0xee); // what the next read overwrites: no frame may still point at it
  }
  return frames;
}

describe('FrameAssembler', () => {
  it('cuts the same frames whatever the reads are: a byte at a time, sizes split, many frames in one read', () => {
    for (const piece of [1, 2, 3, 5, 4096, 65_536, stream.length]) {
      const frames = feed(piece);
      expect(frames.map((f) => f.length), `reads of ${piece}`).toEqual(bodies.map((b) => b.length));
      frames.forEach((frame, i) => expect(frame.equals(bodies[i]!), `reads of ${piece}, frame ${i}`).toBe(true));
    }
  });

  it('stops at a frame its receiver refuses, and goes on from the next read', () => {
    const assembler = new FrameAssembler();
    const seen: number[] = [];
    const two = Buffer.concat([framed(Buffer.from([1])), framed(Buffer.from([2, 2]))]);
    assembler.push(two, 0, two.length, (frame) => {
      seen.push(frame.length);
      return false;
    });
    expect(seen).toEqual([1]);
    const third = framed(Buffer.from([3, 3, 3]));
    assembler.push(third, 0, third.length, (frame) => {
      seen.push(frame.length);
      return true;
    });
    expect(seen).toEqual([1, 3]);
  });

  it('refuses a negative size', () => {
    const bad = Buffer.from([0xff, 0xff, 0xff, 0xfe, 0]);
    expect(() => new FrameAssembler().push(bad, 0, bad.length, () => true)).toThrow(/size -2/);
  });
});

describe('Connection', () => {
  it('closed before it connected, fails its requests at once (not after the connect timeout)', async () => {
    const server = createServer((socket) => socket.on('error', () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      // A connect timeout beyond the test's own (30 s): before the fix the request waited for it.
      const connection = new Connection({ host: '127.0.0.1', port, clientId: 'test', ssl: false, connectTimeoutMs: 120_000, requestTimeoutMs: 120_000 });
      const request = connection.request(3, 1, Buffer.alloc(4));
      connection.close();
      await expect(request).rejects.toThrow(new ConnectionError('connection closed'));
      expect(connection.broken).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }, 30_000);
});
