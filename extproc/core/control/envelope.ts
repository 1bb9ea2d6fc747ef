/**
 * Envelope encryption of provider tokens at rest (issue 11 point 3).
 *
 * Each secret version gets its own random 256-bit data key. The token is sealed with AES-256-GCM
 * under that data key, with the account id and secret version as associated data, so a
 * ciphertext copied onto another account or version does not open. The data key is wrapped with
 * AES-256-GCM under the current key-encryption key (KEK), with the KEK id, account id and version
 * as associated data. Rotating the KEK therefore rewraps 60-byte data keys and leaves every
 * ciphertext — and its plaintext — untouched.
 *
 * GCM with random 96-bit nonces is safe here: each data key seals exactly one message, and a KEK
 * wraps far fewer than the 2^32 keys after which random nonces risk colliding (NIST SP 800-38D §8.3).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { InvalidInputError, KekConfigError, SecretDecryptError } from './errors.ts';
import type { Kek } from './kek.ts';

/** The format label stored beside each secret, so a future scheme can be told apart. */
export const ENVELOPE_ALGORITHM = 'A256GCM+A256GCMKW.v1';

const NONCE = 12;
const TAG = 16;
const KEY = 32;
/** Provider tokens are short strings; anything this large is a paste error. */
export const MAX_SECRET_BYTES = 4096;

/** What a sealed secret is bound to: its associated data. */
export interface SecretBinding {
  readonly accountId: string;
  readonly version: number;
}

/** A secret as stored: nothing here reveals the plaintext without a KEK. */
export interface SealedSecret {
  readonly algorithm: string;
  /** Id of the KEK that wrapped `wrappedKey`. */
  readonly kekId: string;
  /** nonce ‖ AES-256-GCM(KEK, data key) ‖ tag — 60 bytes. */
  readonly wrappedKey: Uint8Array;
  /** nonce ‖ AES-256-GCM(data key, plaintext) ‖ tag. */
  readonly ciphertext: Uint8Array;
}

/** What the admin API may show of a secret: never the secret itself. */
export interface SecretView {
  readonly set: boolean;
  /** Last four characters, or null when the token is too short (under 16) to reveal any of it. */
  readonly last4: string | null;
  /** `sha256:` and the first 16 hex digits of SHA-256(token): tells two tokens apart, reveals neither. */
  readonly fingerprint: string | null;
  readonly updatedAt: string | null;
}

export const UNSET_SECRET: SecretView = { set: false, last4: null, fingerprint: null, updatedAt: null };

/** The displayable facts of a token, computed once when it is set. */
export function describeSecret(plaintext: string): { last4: string | null; fingerprint: string } {
  return {
    last4: plaintext.length >= 16 ? plaintext.slice(-4) : null,
    fingerprint: `sha256:${createHash('sha256').update(plaintext, 'utf8').digest('hex').slice(0, 16)}`,
  };
}

function dataAad(b: SecretBinding): Buffer {
  return Buffer.from(`voicegate.secret.v1\0${b.accountId}\0${b.version}`, 'utf8');
}

function wrapAad(kekId: string, b: SecretBinding): Buffer {
  return Buffer.from(`voicegate.dek.v1\0${kekId}\0${b.accountId}\0${b.version}`, 'utf8');
}

function gcmSeal(key: Uint8Array, plaintext: Uint8Array, aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Throws (Node's "Unsupported state or unable to authenticate data") when anything was altered. */
function gcmOpen(key: Uint8Array, sealed: Uint8Array, aad: Buffer): Buffer {
  if (sealed.length < NONCE + TAG) throw new Error('sealed value too short');
  const nonce = sealed.subarray(0, NONCE);
  const tag = sealed.subarray(sealed.length - TAG);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()]);
}

/**
 * The KEKs of this process, current first. Holds key material, so it prints as its ids only
 * (`console.log`, pino, `JSON.stringify` never see a key).
 *
 * @example
 * const ring = new Keyring(parseKekSpec(process.env.VOICEGATE_KEK ?? ''));
 * const sealed = ring.seal('<provider token>', { accountId, version: 1 });
 * ring.open(sealed, { accountId, version: 1 }); // '<provider token>'
 */
export class Keyring {
  readonly #keys: ReadonlyMap<string, Uint8Array>;
  readonly currentKekId: string;

  constructor(keks: readonly Kek[]) {
    if (keks.length === 0) throw new KekConfigError('the keyring needs at least one KEK');
    const keys = new Map<string, Uint8Array>();
    for (const k of keks) {
      if (k.key.length !== KEY) throw new KekConfigError(`KEK "${k.id}" must be ${KEY} bytes`);
      if (keys.has(k.id)) throw new KekConfigError(`KEK id "${k.id}" appears twice`);
      keys.set(k.id, Uint8Array.from(k.key));
    }
    this.#keys = keys;
    this.currentKekId = keks[0]!.id;
  }

  /** Ids of every KEK, current first. */
  get kekIds(): readonly string[] {
    return [...this.#keys.keys()];
  }

  /** Seals `plaintext` under a fresh data key wrapped by the current KEK. */
  seal(plaintext: string, binding: SecretBinding): SealedSecret {
    const bytes = Buffer.from(plaintext, 'utf8');
    if (bytes.length === 0) throw new InvalidInputError('token', 'must not be empty');
    if (bytes.length > MAX_SECRET_BYTES) throw new InvalidInputError('token', `must be at most ${MAX_SECRET_BYTES} bytes`);
    const dataKey = randomBytes(KEY);
    try {
      return {
        algorithm: ENVELOPE_ALGORITHM,
        kekId: this.currentKekId,
        wrappedKey: gcmSeal(this.#keys.get(this.currentKekId)!, dataKey, wrapAad(this.currentKekId, binding)),
        ciphertext: gcmSeal(dataKey, bytes, dataAad(binding)),
      };
    } finally {
      dataKey.fill(0);
    }
  }

  /** Opens a sealed secret, or throws {@link SecretDecryptError}; never returns an empty string. */
  open(sealed: SealedSecret, binding: SecretBinding): string {
    const dataKey = this.#unwrap(sealed, binding);
    try {
      let plain: Buffer;
      try {
        plain = gcmOpen(dataKey, sealed.ciphertext, dataAad(binding));
      } catch (cause) {
        throw new SecretDecryptError('tampered_ciphertext', binding.accountId, binding.version, sealed.kekId, { cause });
      }
      // seal() refuses empty tokens, so an empty opening can only be a forged envelope.
      if (plain.length === 0) throw new SecretDecryptError('tampered_ciphertext', binding.accountId, binding.version, sealed.kekId);
      return plain.toString('utf8');
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * The same secret with its data key wrapped by the current KEK; the ciphertext is returned
   * byte for byte. Already-current secrets come back unchanged (same object).
   */
  rewrap(sealed: SealedSecret, binding: SecretBinding): SealedSecret {
    if (sealed.kekId === this.currentKekId) return sealed;
    const dataKey = this.#unwrap(sealed, binding);
    try {
      // Opening proves the ciphertext is intact before it is re-certified under the new KEK.
      try {
        gcmOpen(dataKey, sealed.ciphertext, dataAad(binding)).fill(0);
      } catch (cause) {
        throw new SecretDecryptError('tampered_ciphertext', binding.accountId, binding.version, sealed.kekId, { cause });
      }
      return {
        ...sealed,
        kekId: this.currentKekId,
        wrappedKey: gcmSeal(this.#keys.get(this.currentKekId)!, dataKey, wrapAad(this.currentKekId, binding)),
      };
    } finally {
      dataKey.fill(0);
    }
  }

  #unwrap(sealed: SealedSecret, binding: SecretBinding): Buffer {
    const kek = this.#keys.get(sealed.kekId);
    if (!kek) throw new SecretDecryptError('unknown_kek', binding.accountId, binding.version, sealed.kekId);
    let dataKey: Buffer;
    try {
      dataKey = gcmOpen(kek, sealed.wrappedKey, wrapAad(sealed.kekId, binding));
    } catch (cause) {
      throw new SecretDecryptError('wrong_kek_or_tampered_key', binding.accountId, binding.version, sealed.kekId, { cause });
    }
    if (dataKey.length !== KEY) throw new SecretDecryptError('wrong_kek_or_tampered_key', binding.accountId, binding.version, sealed.kekId);
    return dataKey;
  }

  toJSON(): { kekIds: readonly string[] } {
    return { kekIds: this.kekIds };
  }

  [inspect.custom](): string {
    return `Keyring(${this.kekIds.join(', ')})`;
  }
}
