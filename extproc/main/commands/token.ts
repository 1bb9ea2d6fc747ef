/**
 * `voicegate token --config F --user U [--team T…] [--role R…] [--ttl 1h]`: prints a JWT signed
 * with the config's development key (an issuer's `dev_signing_key`), which that issuer trusts.
 * For local use and tests; production tokens come from the organisation's identity provider.
 */
import { parseArgs } from 'node:util';
import { importJWK, SignJWT, type JWK } from 'jose';
import { loadSnapshotFromFile } from '../../adapters/files/config-file.ts';
import type { IssuerConfig, Snapshot } from '../../core/config/snapshot.ts';
import { parseDurationSeconds } from '../signals.ts';

const USAGE = 'usage: voicegate token --config FILE --user USER [--team TEAM]… [--role ROLE]… [--ttl 1h]';

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

export async function tokenCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        user: { type: 'string' },
        team: { type: 'string', multiple: true },
        role: { type: 'string', multiple: true },
        ttl: { type: 'string' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!values.config || !values.user) {
    process.stderr.write(`--config and --user are required\n${USAGE}\n`);
    return 2;
  }
  const ttl = values.ttl === undefined ? 3600 : parseDurationSeconds(values.ttl);
  if (ttl === undefined) {
    process.stderr.write(`--ttl must look like 90s, 15m, 1h or 7d\n${USAGE}\n`);
    return 2;
  }
  try {
    const snapshot = await loadSnapshotFromFile(values.config);
    out(`${await signDevToken(snapshot, { user: values.user, teams: values.team ?? [], roles: values.role ?? [], ttlSeconds: ttl })}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
}
