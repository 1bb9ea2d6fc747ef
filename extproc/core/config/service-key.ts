/**
 * The shape and hash of gateway-issued service keys (`vg_` + 43 base64url characters = 32 random
 * bytes). Here, beside the snapshot, because the hash is the key of `Snapshot.serviceKeys`:
 * the control plane that mints keys and the identity layer that checks them both need it, and the
 * core's folder order lets both import the configuration (control/service-key.ts re-exports it).
 *
 * Only SHA-256 of the key is stored and shipped to pods. A slow password hash (scrypt, argon2)
 * protects low-entropy secrets that people choose; a 256-bit random key cannot be guessed or
 * searched offline whatever the hash, so a fast hash loses nothing and keeps the per-request check
 * at one digest. It is unkeyed on purpose: a keyed hash (HMAC with a pepper) would need one more
 * secret on every pod and protects nothing a 256-bit key does not already protect.
 */
import { createHash } from 'node:crypto';

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
