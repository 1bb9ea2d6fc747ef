import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { describeSecret, Keyring, type SealedSecret } from './envelope.ts';
import { SecretDecryptError } from './errors.ts';

const kek = (id: string) => ({ id, key: new Uint8Array(randomBytes(32)) });
const binding = { accountId: '5f0c7a52-7d2e-4a4b-9a57-0d1f2e3c4b5a', version: 3 };
const token = 'fixture-provider-token-4f9a8b7c6d5e4f3a2b1c';

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretDecryptError);
    expect((err as Error).message).not.toContain(token);
    return (err as SecretDecryptError).reason;
  }
  throw new Error('expected a SecretDecryptError');
}

describe('envelope encryption', () => {
  it('round trip: seal then open gives the token back; nothing sealed contains it', () => {
    const ring = new Keyring([kek('k1')]);
    const sealed = ring.seal(token, binding);
    expect(sealed.kekId).toBe('k1');
    expect(sealed.wrappedKey).toHaveLength(60);
    expect(ring.open(sealed, binding)).toBe(token);
    const all = Buffer.concat([sealed.wrappedKey, sealed.ciphertext]);
    expect(all.includes(Buffer.from(token))).toBe(false);
    // A fresh data key and nonce every time: sealing twice never gives the same bytes.
    expect(Buffer.from(ring.seal(token, binding).ciphertext).equals(Buffer.from(sealed.ciphertext))).toBe(false);
  });

  it('a tampered ciphertext, nonce, tag or wrapped key is refused, never opened to something else', () => {
    const ring = new Keyring([kek('k1')]);
    const sealed = ring.seal(token, binding);
    const n = sealed.ciphertext.length;
    for (const at of [0, 12, n - 17, n - 1]) {
      expect(reasonOf(() => ring.open({ ...sealed, ciphertext: flip(sealed.ciphertext, at) }, binding))).toBe('tampered_ciphertext');
    }
    expect(reasonOf(() => ring.open({ ...sealed, ciphertext: sealed.ciphertext.subarray(0, 20) }, binding))).toBe('tampered_ciphertext');
    expect(reasonOf(() => ring.open({ ...sealed, ciphertext: new Uint8Array(0) }, binding))).toBe('tampered_ciphertext');
    for (const at of [0, 30, 59]) {
      expect(reasonOf(() => ring.open({ ...sealed, wrappedKey: flip(sealed.wrappedKey, at) }, binding))).toBe('wrong_kek_or_tampered_key');
    }
  });

  it('a ciphertext moved to another account or version does not open (associated data)', () => {
    const ring = new Keyring([kek('k1')]);
    const sealed = ring.seal(token, binding);
    expect(() => ring.open(sealed, { ...binding, version: 4 })).toThrow(SecretDecryptError);
    expect(() => ring.open(sealed, { ...binding, accountId: '00000000-0000-4000-8000-000000000000' })).toThrow(SecretDecryptError);
    // Relabelling the KEK id is caught even when both ids hold the same key bytes: the id is part
    // of the wrapped key's associated data.
    const same = kek('k1');
    const two = new Keyring([same, { id: 'k0', key: same.key }]);
    expect(reasonOf(() => two.open({ ...two.seal(token, binding), kekId: 'k0' }, binding))).toBe('wrong_kek_or_tampered_key');
  });

  it('a wrong KEK is a clear error naming the KEK id and the account, without key material', () => {
    const right = kek('k1');
    const sealed = new Keyring([right]).seal(token, binding);
    const wrongSameId = new Keyring([{ id: 'k1', key: new Uint8Array(randomBytes(32)) }]);
    let err: SecretDecryptError | undefined;
    try {
      wrongSameId.open(sealed, binding);
    } catch (e) {
      err = e as SecretDecryptError;
    }
    expect(err).toBeInstanceOf(SecretDecryptError);
    expect(err!.reason).toBe('wrong_kek_or_tampered_key');
    expect(err!.message).toContain('"k1"');
    expect(err!.message).toContain(binding.accountId);
    expect(err!.message).not.toContain(Buffer.from(right.key).toString('base64'));
    expect(reasonOf(() => new Keyring([kek('k9')]).open(sealed, binding))).toBe('unknown_kek');
  });

  it('KEK rotation rewraps the data key only: same ciphertext bytes, same plaintext, old KEK no longer needed', () => {
    const k1 = kek('k1');
    const k2 = kek('k2');
    const sealed = new Keyring([k1]).seal(token, binding);
    const rotated = new Keyring([k2, k1]);
    const rewrapped = rotated.rewrap(sealed, binding);
    expect(rewrapped.kekId).toBe('k2');
    expect(Buffer.from(rewrapped.ciphertext).equals(Buffer.from(sealed.ciphertext))).toBe(true);
    expect(Buffer.from(rewrapped.wrappedKey).equals(Buffer.from(sealed.wrappedKey))).toBe(false);
    expect(new Keyring([k2]).open(rewrapped, binding)).toBe(token);
    expect(rotated.rewrap(rewrapped, binding)).toBe(rewrapped);
    // A tampered ciphertext is not re-certified under the new KEK.
    const tampered: SealedSecret = { ...sealed, ciphertext: flip(sealed.ciphertext, 14) };
    expect(reasonOf(() => rotated.rewrap(tampered, binding))).toBe('tampered_ciphertext');
  });

  it('the API view and the keyring itself show no secret', () => {
    const k1 = kek('k1');
    const ring = new Keyring([k1]);
    const view = describeSecret(token);
    expect(view).toEqual({ last4: token.slice(-4), fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{16}$/) });
    expect(JSON.stringify(view)).not.toContain(token.slice(0, -4));
    expect(describeSecret('short-token').last4).toBeNull();
    expect(describeSecret(token).fingerprint).toBe(view.fingerprint);
    expect(describeSecret(`${token}x`).fingerprint).not.toBe(view.fingerprint);
    const b64 = Buffer.from(k1.key).toString('base64');
    expect(JSON.stringify(ring)).toBe('{"kekIds":["k1"]}');
    expect(inspect(ring)).toBe('Keyring(k1)');
    expect(`${JSON.stringify(ring)}${inspect(ring, { showHidden: true })}`).not.toContain(b64);
  });

  it('empty and oversized tokens are refused at seal time', () => {
    const ring = new Keyring([kek('k1')]);
    expect(() => ring.seal('', binding)).toThrow(/token: must not be empty/);
    expect(() => ring.seal('x'.repeat(4097), binding)).toThrow(/at most 4096/);
  });
});
