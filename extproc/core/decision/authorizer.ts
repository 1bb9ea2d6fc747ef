/**
 * The in-memory entry point to authorization (`check()`), shared by Envoy's gRPC adapter and the
 * embedded edge: find the token, verify it (a JWT against the snapshot's issuers, a `vg_` service
 * key against its service keys), add the control plane's team memberships, decide.
 */
import type { Snapshot, SnapshotSource } from '../config/snapshot.ts';
import { decide } from './decide.ts';
import { IdentityVerifier, type IdentityResult, type VerifierOptions } from '../identity/identity.ts';
import { findToken } from '../identity/token.ts';
import { looksLikeServiceKey, verifyServiceKey } from '../identity/service-key.ts';
import { withStoreTeams } from '../identity/store-teams.ts';
import type { Authorizer, CheckInput, Decision } from './types.ts';

export interface AuthorizerOptions extends VerifierOptions {}

export function createAuthorizer(source: SnapshotSource, opts: AuthorizerOptions = {}): Authorizer {
  const now = opts.now ?? Date.now;
  // One verifier per snapshot: a new snapshot may trust other issuers, so its cache starts empty.
  // Weakly held, so a request still deciding with the previous snapshot keeps its warm cache.
  const verifiers = new WeakMap<Snapshot, IdentityVerifier>();
  const verifierOf = (s: Snapshot): IdentityVerifier => {
    let v = verifiers.get(s);
    if (!v) verifiers.set(s, (v = new IdentityVerifier(s.issuers, opts)));
    return v;
  };
  // Build eagerly so remote JWKS are fetched at start, not on the first request.
  const initial = source.current();
  if (initial) verifierOf(initial);
  source.onSwap((s) => verifierOf(s));

  return {
    async check(input: CheckInput, given?: Snapshot): Promise<Decision> {
      const snapshot = given ?? source.current();
      if (!snapshot) return decide(input, undefined, { ok: false, code: 'missing_token', message: '' });
      const lookup = findToken(input.headers, input.path);
      let identity: IdentityResult;
      if (!lookup.found) {
        identity = lookup.malformed
          ? { ok: false, code: 'malformed_token', message: 'the Authorization header must be "Bearer <token>"' }
          : {
              ok: false,
              code: 'missing_token',
              message: 'send a gateway token as "Authorization: Bearer <token>" (or ?token=<token> on WebSocket URLs)',
            };
      } else if (looksLikeServiceKey(lookup.token)) {
        // A `vg_` bearer is a service key or nothing: it is never tried as a JWT (it cannot be one).
        identity = verifyServiceKey(lookup.token, snapshot.serviceKeys, now());
      } else {
        identity = await verifierOf(snapshot).verify(lookup.token);
      }
      if (identity.ok) identity = { ...identity, identity: withStoreTeams(identity.identity, snapshot.teamMembers) };
      return decide(input, snapshot, identity);
    },
  };
}
