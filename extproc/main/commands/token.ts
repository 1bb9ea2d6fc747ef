/**
 * `voicegate token --config F --user U [--team T…] [--role R…] [--ttl 1h]`: prints a JWT signed
 * with the config's development key (an issuer's `dev_signing_key`), which that issuer trusts.
 * For local use and tests; production tokens come from the organisation's identity provider.
 */
import { importJWK, SignJWT, type JWK } from 'jose';
import type { IssuerConfig, Snapshot } from '../../core/config/snapshot.ts';
import { defineCommand, loadConfig, report } from '../command.ts';
import { TOKEN_OPTIONS } from '../options.ts';

export interface DevTokenRequest {
  readonly user: string;
  readonly teams?: readonly string[];
  readonly roles?: readonly string[];
  readonly ttlSeconds?: number;
}

/** The first issuer with a development signing key, or undefined. */
export function devIssuer(snapshot: Snapshot): (IssuerConfig & { devSigningKey: JWK }) | undefined {
  return snapshot.issuers.find((i): i is IssuerConfig & { devSigningKey: JWK } => i.devSigningKey !== undefined);
}

/** Signs a development token for `req` with the snapshot's development key. */
export async function signDevToken(snapshot: Snapshot, req: DevTokenRequest): Promise<string> {
  const issuer = devIssuer(snapshot);
  if (!issuer) throw new Error('no issuer in this config has a dev_signing_key; use your identity provider to get tokens');
  const jwk = issuer.devSigningKey;
  const alg = typeof jwk.alg === 'string' ? jwk.alg : jwk.kty === 'OKP' ? 'EdDSA' : jwk.kty === 'RSA' ? 'RS256' : 'ES256';
  const key = await importJWK(jwk, alg);
  const audience = issuer.audiences[0];
  if (audience === undefined) throw new Error('the development issuer has no audience');
  return new SignJWT({ [issuer.teamsClaim]: [...(req.teams ?? [])], [issuer.rolesClaim]: [...(req.roles ?? [])] })
    .setProtectedHeader({ alg, typ: 'JWT', ...(jwk.kid ? { kid: jwk.kid } : {}) })
    .setIssuer(issuer.issuer)
    .setAudience(audience)
    .setSubject(req.user)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (req.ttlSeconds ?? 3600))
    .sign(key);
}

export const tokenCommand = defineCommand("print a development JWT signed with the config's dev key", TOKEN_OPTIONS, async (o, ctx) => {
  const snapshot = await loadConfig(ctx, o.config);
  if (!snapshot) return 1;
  try {
    ctx.stdout(`${await signDevToken(snapshot, { user: o.user, teams: o.team, roles: o.role, ttlSeconds: o.ttl })}\n`);
    return 0;
  } catch (err) {
    report(ctx, (err as Error).message);
    return 1;
  }
});
