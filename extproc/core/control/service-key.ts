/**
 * Service keys: the gateway's own API keys for applications (`vg_` + 43 base64url characters =
 * 32 random bytes).
 *
 * The shape and the hash live in config/service-key.ts (the snapshot is keyed by the hash and the
 * identity layer checks keys with it); re-exported here for the control plane.
 */
import { randomBytes } from 'node:crypto';
import { hashServiceKey, SERVICE_KEY_PREFIX } from '../config/service-key.ts';

export { hashServiceKey, isServiceKeyShaped, SERVICE_KEY_PREFIX } from '../config/service-key.ts';

/** A fresh key: the plaintext (shown once), its hash and a short hint (`vg_AbCd`) for listings. */
export function newServiceKey(): { plaintext: string; hash: string; hint: string } {
  const plaintext = SERVICE_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { plaintext, hash: hashServiceKey(plaintext), hint: plaintext.slice(0, 7) };
}
