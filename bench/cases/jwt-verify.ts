/**
 * Case 4 — JWT verification in this process (pinned to the load core): `IdentityVerifier.verify`
 * for ES256, RS256 and EdDSA tokens, uncached (every token new) and cached (one token again and
 * again). Baselines: node:crypto's bare signature check of the same tokens (what jose adds on
 * top: parsing, JWKS lookup, claim checks), and for the cache, the uncached rate.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { IdentityVerifier } from '../../extproc/core/identity/identity.ts';
import type { IssuerConfig } from '../../extproc/core/config/snapshot.ts';
import type { BenchSettings } from '../harness.ts';
import type { CaseResult, Row } from '../report.ts';
import { spread } from '../stats.ts';

const CASE = '4 JWT verification';
const ISSUER = 'https://bench.voicegate.local';
const ALGS = ['ES256', 'RS256', 'EdDSA'] as const;
type Alg = (typeof ALGS)[number];
/** Uncached verifications run this many at a time: WebCrypto work is queued, not awaited one by one. */
const IN_FLIGHT = 16;

interface Keys {
  readonly issuer: IssuerConfig;
  readonly privateKey: CryptoKey;
  readonly publicKey: KeyObject;
}

async function keysFor(alg: Alg): Promise<Keys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const jwk = { ...(await exportJWK(publicKey)), kid: `bench-${alg}`, alg, use: 'sig' };
  return {
    privateKey,
    publicKey: createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' }),
    issuer: {
      issuer: ISSUER,
      audiences: ['voicegate'],
      jwks: { keys: [jwk] },
      algorithms: [alg],
      userClaim: 'sub',
      teamsClaim: 'teams',
      rolesClaim: 'roles',
      clockToleranceSec: 30,
    },
  };
}

function sign(k: Keys, alg: Alg, i: number): Promise<string> {
  return new SignJWT({ teams: ['voice'], roles: [] })
    .setProtectedHeader({ alg, typ: 'JWT', kid: `bench-${alg}` })
    .setIssuer(ISSUER)
    .setAudience('voicegate')
    .setSubject(`user-${i}`)
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(k.privateKey);
}

/** node:crypto's check of the JWS signature alone (RFC 7515 signing input = header.payload). */
function rawVerify(alg: Alg, key: KeyObject, token: string): boolean {
  const dot = token.lastIndexOf('.');
  const input = Buffer.from(token.slice(0, dot));
  const sig = Buffer.from(token.slice(dot + 1), 'base64url');
  if (alg === 'EdDSA') return cryptoVerify(null, input, key, sig);
  return cryptoVerify('sha256', input, alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key, sig);
}

async function uncachedRate(k: Keys, tokens: readonly string[]): Promise<number> {
  const v = new IdentityVerifier([k.issuer]);
  let next = 0;
  let bad = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      for (let i = next++; i < tokens.length; i = next++) {
        const r = await v.verify(tokens[i]!);
        if (!r.ok || r.cached) bad++;
      }
    }),
  );
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  if (bad) throw new Error(`${bad} uncached verifications failed or hit the cache`);
  return tokens.length / s;
}

async function cachedRate(k: Keys, token: string, n: number): Promise<number> {
  const v = new IdentityVerifier([k.issuer]);
  if (!(await v.verify(token)).ok) throw new Error('token does not verify');
  let hits = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if ((await v.verify(token)).ok) hits++;
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  if (hits !== n) throw new Error('cached verification failed');
  return n / s;
}

function rawRate(alg: Alg, key: KeyObject, tokens: readonly string[]): number {
  const start = process.hrtime.bigint();
  for (const t of tokens) if (!rawVerify(alg, key, t)) throw new Error('raw verify failed');
  return tokens.length / (Number(process.hrtime.bigint() - start) / 1e9);
}

export async function jwtVerify(s: BenchSettings): Promise<CaseResult> {
  const perRound = s.quick ? 1_000 : 3_000;
  const cachedN = s.quick ? 300_000 : 1_000_000;
  const rows: Row[] = [];
  const raw: Record<string, { raw: number[]; uncached: number[]; cached: number[] }> = {};
  for (const alg of ALGS) {
    const k = await keysFor(alg);
    const tokens: string[] = [];
    // 64 at a time: WebCrypto's signing overlaps the JS around it.
    for (let i = 0; i < perRound * (s.rounds + 1); i += 64) {
      tokens.push(...(await Promise.all(Array.from({ length: Math.min(64, perRound * (s.rounds + 1) - i) }, (_, j) => sign(k, alg, i + j)))));
    }
    const round = (r: number) => tokens.slice(perRound * r, perRound * (r + 1));
    // Warm-up on the spare slice: JIT, WebCrypto key import, the cache path.
    await uncachedRate(k, round(s.rounds));
    rawRate(alg, k.publicKey, round(s.rounds));
    await cachedRate(k, tokens[0]!, Math.min(cachedN, 100_000));
    const f = (raw[alg] = { raw: [] as number[], uncached: [] as number[], cached: [] as number[] });
    for (let r = 0; r < s.rounds; r++) {
      f.raw.push(rawRate(alg, k.publicKey, round(r)));
      f.uncached.push(await uncachedRate(k, round(r)));
      f.cached.push(await cachedRate(k, tokens[r]!, cachedN));
    }
    const rawMedian = spread(f.raw).median;
    const uncachedMedian = spread(f.uncached).median;
    s.log(`  ${alg}: raw ${rawMedian.toFixed(0)}/s, uncached ${uncachedMedian.toFixed(0)}/s, cached ${spread(f.cached).median.toFixed(0)}/s`);
    rows.push({ case: CASE, metric: `${alg} signature only (node:crypto)`, path: 'baseline', unit: '/s', value: spread(f.raw) });
    rows.push({ case: CASE, metric: `${alg} uncached`, path: 'IdentityVerifier', unit: '/s', value: spread(f.uncached), baseline: rawMedian });
    rows.push({
      case: CASE,
      metric: `${alg} cached`,
      path: 'IdentityVerifier',
      unit: '/s',
      value: spread(f.cached),
      baseline: uncachedMedian,
      goals: [{ cmp: 'ge', value: 1_000_000, of: 'value', text: '≥ 1M/s' }],
    });
  }
  return {
    id: 4,
    title: 'JWT verification',
    rows,
    notes: [
      `In the load-generator process (pinned to its own core, libuv threads included). Uncached: ${perRound} distinct tokens per round through a fresh verifier, ${IN_FLIGHT} in flight; cached: one token verified ${cachedN.toLocaleString('en-US')} times in a row (sequential awaits); ${s.rounds} rounds after a warm-up. RSA 2048, P-256, Ed25519 keys from jose's generateKeyPair.`,
      '"vs direct" here: the uncached row against node:crypto checking the same signatures synchronously (what jose, the JWKS lookup and the claim checks cost on top), and the cached row against the uncached one.',
    ],
    raw,
  };
}
