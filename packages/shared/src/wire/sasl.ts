/**
 * SASL authentication of a connection (KIP-43, KIP-152): SaslHandshake v1 names the mechanism,
 * then SaslAuthenticate v1 carries its exchange. PLAIN sends the name and password in one message
 * (use it over TLS); SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) prove the password
 * without sending it and check the broker's proof that it knows the stored key.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConfigError, type KafkaEnv } from '../config.ts';
import { Reader, Writer } from './connection.ts';

export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

export interface SaslOptions {
  readonly mechanism: SaslMechanism;
  readonly username: string;
  readonly password: string;
}

/** SASL from the Kafka settings (KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD), or undefined: none. */
export function saslOf(env: KafkaEnv): SaslOptions | undefined {
  if (env.KAFKA_SASL_MECHANISM === undefined) return undefined;
  if (env.KAFKA_SASL_USERNAME === undefined || env.KAFKA_SASL_PASSWORD === undefined) {
    throw new ConfigError(`KAFKA_SASL_MECHANISM=${env.KAFKA_SASL_MECHANISM} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD to be set`);
  }
  return { mechanism: env.KAFKA_SASL_MECHANISM, username: env.KAFKA_SASL_USERNAME, password: env.KAFKA_SASL_PASSWORD };
}

/** Authentication refused or broken off: not retried by the connection (a wrong password stays wrong). */
export class SaslError extends Error {
  override readonly name = 'SaslError';
}

const SASL_HANDSHAKE = 17;
const SASL_AUTHENTICATE = 36;

/** Sends one request on the connection being authenticated and resolves with its response body. */
export type RawRequest = (apiKey: number, apiVersion: number, body: Buffer) => Promise<Buffer>;

/** The mechanism's name as Kafka spells it. */
const kafkaName = (mechanism: SaslMechanism): string => mechanism.toUpperCase();

/** Authenticates a connection that has sent nothing else yet. */
export async function authenticate(send: RawRequest, sasl: SaslOptions, where: string): Promise<void> {
  const name = kafkaName(sasl.mechanism);
  const handshake = new Reader(await send(SASL_HANDSHAKE, 1, new Writer(32).string(name).bytes()));
  const handshakeError = handshake.int16();
  if (handshakeError !== 0) {
    const enabled = handshake.array(() => handshake.string() ?? '');
    throw new SaslError(`${where}: the broker does not accept SASL mechanism ${name} (error ${handshakeError}); it accepts ${enabled.join(', ') || 'none'}`);
  }
  const exchange = async (token: Buffer): Promise<Buffer> => {
    const r = new Reader(await send(SASL_AUTHENTICATE, 1, new Writer(token.length + 8).sizedBytes(token).bytes()));
    const error = r.int16();
    const message = r.string();
    const answer = r.bytes() ?? Buffer.alloc(0);
    if (error !== 0) throw new SaslError(`${where}: SASL ${name} authentication of ${JSON.stringify(sasl.username)} failed: ${message ?? `error ${error}`}`);
    return answer;
  };
  if (sasl.mechanism === 'plain') {
    await exchange(Buffer.from(`\0${sasl.username}\0${sasl.password}`, 'utf8'));
    return;
  }
  const scram = new ScramClient(sasl.mechanism === 'scram-sha-256' ? 'sha256' : 'sha512', sasl.username, sasl.password);
  const serverFirst = (await exchange(Buffer.from(scram.firstMessage(), 'utf8'))).toString('utf8');
  const serverFinal = (await exchange(Buffer.from(scram.finalMessage(serverFirst, where), 'utf8'))).toString('utf8');
  scram.checkServerFinal(serverFinal, where);
}

/** A SCRAM exchange from the client's side (RFC 5802); the nonce can be given for tests. */
export class ScramClient {
  private readonly hash: 'sha256' | 'sha512';
  private readonly password: string;
  private readonly firstBare: string;
  private readonly nonce: string;
  private serverSignature: Buffer | undefined;

  constructor(hash: 'sha256' | 'sha512', username: string, password: string, nonce = randomBytes(24).toString('base64')) {
    this.hash = hash;
    this.password = password;
    this.nonce = nonce;
    this.firstBare = `n=${username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
  }

  /** client-first-message: no channel binding, no authorization identity. */
  firstMessage(): string {
    return `n,,${this.firstBare}`;
  }

  /** client-final-message for the server's first message: the proof that the password is known. */
  finalMessage(serverFirst: string, where: string): string {
    const fields = parseFields(serverFirst);
    if (fields.has('e')) throw new SaslError(`${where}: SCRAM refused: ${fields.get('e')}`);
    const nonce = fields.get('r');
    const salt = fields.get('s');
    const iterations = Number(fields.get('i'));
    if (nonce === undefined || !nonce.startsWith(this.nonce) || nonce.length === this.nonce.length) throw new SaslError(`${where}: SCRAM: the server's nonce does not extend ours`);
    if (salt === undefined || !Number.isInteger(iterations) || iterations < 1) throw new SaslError(`${where}: SCRAM: a server-first-message without salt or iteration count: ${serverFirst}`);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    // The password's UTF-8 bytes as they are, as Kafka's broker derives the stored credentials (no SASLprep).
    const salted = pbkdf2Sync(Buffer.from(this.password, 'utf8'), Buffer.from(salt, 'base64'), iterations, this.hash === 'sha256' ? 32 : 64, this.hash);
    const clientKey = this.hmac(salted, 'Client Key');
    const storedKey = createHash(this.hash).update(clientKey).digest();
    const signature = this.hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!;
    this.serverSignature = this.hmac(this.hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server's proof (server-final-message): a server that does not know the stored key is refused. */
  checkServerFinal(serverFinal: string, where: string): void {
    const fields = parseFields(serverFinal);
    if (fields.has('e')) throw new SaslError(`${where}: SCRAM refused: ${fields.get('e')}`);
    const verifier = Buffer.from(fields.get('v') ?? '', 'base64');
    if (this.serverSignature === undefined || verifier.length !== this.serverSignature.length || !timingSafeEqual(verifier, this.serverSignature)) {
      throw new SaslError(`${where}: SCRAM: the server's signature does not match (not the broker the credentials are for?)`);
    }
  }

  private hmac(key: Buffer, data: string): Buffer {
    return createHmac(this.hash, key).update(data, 'utf8').digest();
  }
}

/** "a=1,b=2" as a map (a value may hold '='). */
function parseFields(message: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of message.split(',')) {
    const at = part.indexOf('=');
    if (at === 1) fields.set(part[0]!, part.slice(2));
  }
  return fields;
}
