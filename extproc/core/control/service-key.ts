/**
 * Service keys: the gateway's own API keys for applications (`vg_` + 43 base64url characters =
 * 32 random bytes).
 *
 * Only SHA-256 of the key is stored and shipped to pods. A slow password hash (scrypt, argon2)
 * protects low-entropy secrets that people choose; a 256-bit random key cannot be guessed or
 * searched offline whatever the hash, so a fast hash loses nothing and keeps the per-request check
 * at one digest. It is unkeyed on purpose: a keyed hash (HMAC with a pepper) would need one more
 * secret on every pod and protects nothing a 256-bit key does not already protect.
 */
import { createHash, randomBytes } from 'node:crypto';

export const SERVICE_KEY_PREFIX = 'vg_';
const SHAPE = /^vg_[A-Za-z0-9_-]{43}$/;

/** Whether `s` has the shape of a service key (cheap test before hashing a bearer credential). */
export function isServiceKeyShaped(s: string): boolean {
  return SHAPE.test(s);
}

/** Lower-case hex SHA-256 of the whole key, `vg_` included: what is stored and looked up. */
export function hashServiceKey(plaintext: string): string {
  return createHash('sha256').update(plaintext, 'utf8').digest('hex');
}

/** A fresh key: the plaintext (shown once), its hash and a short hint (`vg_AbCd`) for listings. */
export function newServiceKey(): { plaintext: string; hash: string; hint: string } {
  const plaintext = SERVICE_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { plaintext, hash: hashServiceKey(plaintext), hint: plaintext.slice(0, 7) };
}
