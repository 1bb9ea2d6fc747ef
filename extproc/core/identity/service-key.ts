/**
 * Caller identity from a gateway-issued service key (`vg_…`): one SHA-256 and one map lookup in
 * the snapshot, no I/O and no cache, so revoking a key (it leaves the next snapshot) takes effect
 * on the very next request. A valid key is the user `service:<name>`, authorized exactly like a
 * JWT user of that name (collaborators, teams, limits, usage).
 */
import type { ServiceKeyEntry } from '../config/snapshot.ts';
import { hashServiceKey, isServiceKeyShaped, SERVICE_KEY_PREFIX } from '../config/service-key.ts';
import type { IdentityResult } from './identity.ts';

/** The `issuer` of every service-key identity: the gateway itself. */
export const SERVICE_KEY_ISSUER = 'voicegate';

/** Whether a bearer credential is meant as a service key (then it is never tried as a JWT). */
export function looksLikeServiceKey(token: string): boolean {
  return token.startsWith(SERVICE_KEY_PREFIX);
}

// One message for unknown, revoked and expired keys: the answer must not tell a caller holding
// a guessed or stolen key whether it ever existed. The key itself is never quoted.
const INVALID = 'the service key is not valid (unknown, revoked or expired); ask an administrator for a new one';

/**
 * Checks a `vg_…` bearer against the snapshot's keys at `nowMs`.
 *
 * @example
 * verifyServiceKey(key, new Map([[hashServiceKey(key), { subject: 'service:ivr', notAfterMs: null }]]), Date.now());
 * // { ok: true, cached: false, identity: { issuer: 'voicegate', user: 'service:ivr', teams: [], roles: [] } }
 */
export function verifyServiceKey(token: string, keys: ReadonlyMap<string, ServiceKeyEntry> | undefined, nowMs: number): IdentityResult {
  if (!isServiceKeyShaped(token)) return { ok: false, code: 'invalid_service_key', message: INVALID };
  const entry = keys?.get(hashServiceKey(token));
  // `notAfterMs` is the last valid instant (expiry, or the end of a rotation's grace).
  if (!entry || (entry.notAfterMs !== null && entry.notAfterMs < nowMs)) {
    return { ok: false, code: 'invalid_service_key', message: INVALID };
  }
  return {
    ok: true,
    cached: false,
    identity: {
      issuer: SERVICE_KEY_ISSUER,
      user: entry.subject,
      teams: [],
      roles: [],
      ...(entry.notAfterMs !== null ? { expiresAtMs: entry.notAfterMs } : {}),
    },
  };
}
