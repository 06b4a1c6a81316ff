import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config.ts';
import { saslOf, ScramClient, SaslError } from './sasl.ts';

// RFC 7677, section 3: the SCRAM-SHA-256 exchange of user "user" with password "pencil".
const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

describe('SCRAM client', () => {
  it("makes RFC 7677's messages for its example and accepts the server's proof", () => {
    const scram = new ScramClient('sha256', 'user', 'pencil', CLIENT_NONCE);
    expect(scram.firstMessage()).toBe('n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
    expect(scram.finalMessage(SERVER_FIRST, 'b:1')).toBe(CLIENT_FINAL);
    expect(() => scram.checkServerFinal(SERVER_FINAL, 'b:1')).not.toThrow();
  });

  it("refuses a server whose proof is not the stored key's, an error, and a nonce that does not extend its own", () => {
    const scram = new ScramClient('sha256', 'user', 'pencil', CLIENT_NONCE);
    scram.finalMessage(SERVER_FIRST, 'b:1');
    expect(() => scram.checkServerFinal('v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', 'b:1')).toThrow(new SaslError("b:1: SCRAM: the server's signature does not match (not the broker the credentials are for?)"));
    expect(() => scram.checkServerFinal('e=invalid-proof', 'b:1')).toThrow(new SaslError('b:1: SCRAM refused: invalid-proof'));
    const other = new ScramClient('sha256', 'user', 'pencil', 'another-nonce');
    expect(() => other.finalMessage(SERVER_FIRST, 'b:1')).toThrow(new SaslError("b:1: SCRAM: the server's nonce does not extend ours"));
    expect(() => new ScramClient('sha256', 'user', 'pencil', CLIENT_NONCE).finalMessage(`r=${CLIENT_NONCE}x,i=4096`, 'b:1')).toThrow(SaslError);
  });

  it("escapes ',' and '=' in the user name, and proves with SHA-512's key length", () => {
    expect(new ScramClient('sha512', 'a=b,c', 'p', 'n0').firstMessage()).toBe('n,,n=a=3Db=2Cc,r=n0');
    const proof = new ScramClient('sha512', 'user', 'pencil', CLIENT_NONCE).finalMessage(SERVER_FIRST, 'b:1').split(',p=')[1]!;
    expect(Buffer.from(proof, 'base64')).toHaveLength(64);
  });
});

describe('SASL settings', () => {
  it('are none without a mechanism, the three settings with one, and name what is missing', () => {
    expect(saslOf({ KAFKA_SASL_MECHANISM: undefined } as never)).toBeUndefined();
    expect(saslOf({ KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' } as never)).toEqual({ mechanism: 'scram-sha-512', username: 'u', password: 'p' });
    expect(() => saslOf({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u' } as never)).toThrow(new ConfigError('KAFKA_SASL_MECHANISM=plain needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD to be set'));
  });
});
