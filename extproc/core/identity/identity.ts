/**
 * Caller identity from a gateway JWT, verified with `jose` against keys held in memory.
 *
 * Remote JWKS are fetched once (warmed at construction), cached without expiry and refetched only
 * when a token names an unknown `kid` — at most once per cooldown — so the hot path never waits
 * on the network. Successful verifications are cached by token until the token expires.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTVerifyGetKey,
} from 'jose';
import { z } from 'zod';
import type { IssuerConfig } from '../config/snapshot.ts';

export interface Identity {
  readonly issuer: string;
  /** The user claim, qualified with the issuer's name when it has one (`corp:alice`). */
  readonly user: string;
  /** Sorted, de-duplicated, qualified like {@link user}. */
  readonly teams: readonly string[];
  readonly roles: readonly string[];
  /** `exp` in ms since epoch, if the token has one. */
  readonly expiresAtMs?: number;
}

export type IdentityErrorCode =
  | 'missing_token'
  | 'malformed_token'
  | 'unsupported_algorithm'
  | 'unknown_issuer'
  | 'invalid_audience'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'unknown_key'
  | 'invalid_signature'
  | 'invalid_claims'
  | 'jwks_unavailable'
  /** A `vg_…` bearer that is no valid service key (identity/service-key.ts). */
  | 'invalid_service_key';

export type IdentityResult =
  | { readonly ok: true; readonly identity: Identity; readonly cached: boolean }
  | { readonly ok: false; readonly code: IdentityErrorCode; readonly message: string };

export interface VerifierOptions {
  /** Max cached verifications; the oldest is evicted first. */
  readonly cacheSize?: number;
  /** Minimum time between two JWKS refetches caused by unknown `kid`s (ms). */
  readonly jwksCooldownMs?: number;
  /** Timeout of one JWKS fetch (ms). */
  readonly jwksTimeoutMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/**
 * `teams` and `roles` must be JSON arrays of strings. A string is refused rather than split: IdPs
 * disagree on separators (spaces, commas), and a guessed split could make up a team.
 */
const stringList = z.array(z.string().min(1).max(256)).max(256);

/** Separates an issuer's name from the names its tokens carry (`corp:alice`). */
export const QUALIFIER_SEPARATOR = ':';

/** Users of this prefix are service accounts (identity/service-key.ts); no token names one. */
const SERVICE_PREFIX = `service${QUALIFIER_SEPARATOR}`;

interface CompiledIssuer {
  readonly config: IssuerConfig;
  readonly keys: JWTVerifyGetKey;
  readonly claims: z.ZodType<{ user: string; teams: string[]; roles: string[] }>;
}

/** Remote key sets outlive snapshots so that a config swap does not refetch every JWKS. */
const remoteSets = new Map<string, JWTVerifyGetKey>();

/** Longest wait before retrying a JWKS that has never loaded (an IdP that starts after us). */
const FIRST_LOAD_RETRY_MS = 1_000;

function remoteSet(url: string, opts: VerifierOptions): JWTVerifyGetKey {
  const key = `${url}#${opts.jwksCooldownMs ?? ''}#${opts.jwksTimeoutMs ?? ''}`;
  let getKey = remoteSets.get(key);
  if (!getKey) {
    const cooldownMs = opts.jwksCooldownMs ?? 30_000;
    const set = createRemoteJWKSet(new URL(url), {
      cooldownDuration: cooldownMs,
      cacheMaxAge: Infinity,
      timeoutDuration: opts.jwksTimeoutMs ?? 5_000,
    });
    // jose refetches on every call until a first load succeeds; while the IdP is unreachable,
    // retry at most once per interval instead of on every request.
    let failedAt: number | undefined;
    const load = (): Promise<void> =>
      set.reload().then(
        () => void (failedAt = undefined),
        (err: unknown) => {
          failedAt = Date.now();
          throw err;
        },
      );
    getKey = async (header, token) => {
      if (!set.fresh) {
        if (failedAt !== undefined && Date.now() - failedAt < Math.min(cooldownMs, FIRST_LOAD_RETRY_MS)) {
          throw new Error('JWKS not loaded yet');
        }
        await load();
      }
      return set(header, token);
    };
    remoteSets.set(key, getKey);
    // Warm the cache now so the first request does not pay for the fetch.
    load().catch(() => {});
  }
  return getKey;
}

/**
 * The claims of one issuer, qualified with its name. When some other issuer is named, an unnamed
 * issuer's names may not contain the separator: `corp:alice` must only ever come from `corp`.
 */
function claimsSchema(c: IssuerConfig, colonReserved: boolean): CompiledIssuer['claims'] {
  const plain = z.string().min(1).max(256);
  const name = colonReserved
    ? plain.refine((v) => !v.includes(QUALIFIER_SEPARATOR), `must not contain "${QUALIFIER_SEPARATOR}"`)
    : plain;
  const list = colonReserved ? z.array(name).max(256) : stringList;
  // `service:<name>` is the user a gateway service key is authorized as; even a lone unnamed
  // issuer may not mint it (a named one cannot: config/schema.ts reserves the name `service`).
  const user = name.refine((v) => c.name !== undefined || !v.startsWith(SERVICE_PREFIX), `must not start with "${SERVICE_PREFIX}"`);
  const qualify = (v: string): string => (c.name === undefined ? v : `${c.name}${QUALIFIER_SEPARATOR}${v}`);
  const names = (v: string[] | undefined): string[] => [...new Set((v ?? []).map(qualify))].sort();
  return z
    .looseObject({
      [c.userClaim]: user,
      [c.teamsClaim]: list.optional(),
      [c.rolesClaim]: list.optional(),
    })
    .transform((p) => ({
      user: qualify(p[c.userClaim] as string),
      teams: names(p[c.teamsClaim] as string[] | undefined),
      roles: names(p[c.rolesClaim] as string[] | undefined),
    }));
}

/** Why a claim was refused, naming it and (for lists) the shape it must have. */
function claimProblem(c: IssuerConfig, issue: z.core.$ZodIssue | undefined): string {
  const claim = String(issue?.path[0] ?? '');
  if (claim === c.teamsClaim || claim === c.rolesClaim) {
    return `the token's "${claim}" claim must be an array of strings (names of at most 256 characters${issue?.code === 'custom' ? `, without "${QUALIFIER_SEPARATOR}"` : ''})`;
  }
  return `the token's "${claim}" claim is missing or malformed`;
}

export class IdentityVerifier {
  readonly #issuers = new Map<string, CompiledIssuer>();
  readonly #cache = new Map<string, Identity>();
  readonly #cacheSize: number;
  readonly #now: () => number;

  constructor(issuers: readonly IssuerConfig[], opts: VerifierOptions = {}) {
    this.#cacheSize = opts.cacheSize ?? 10_000;
    this.#now = opts.now ?? Date.now;
    const someNamed = issuers.some((i) => i.name !== undefined);
    for (const config of issuers) {
      const keys: JWTVerifyGetKey = config.jwksUrl
        ? remoteSet(config.jwksUrl, opts)
        : createLocalJWKSet({ keys: [...(config.jwks?.keys ?? [])] });
      this.#issuers.set(config.issuer, { config, keys, claims: claimsSchema(config, someNamed && config.name === undefined) });
    }
  }

  /** Verifies a compact JWS; never throws. */
  async verify(token: string): Promise<IdentityResult> {
    const hit = this.#cache.get(token);
    if (hit) {
      if (hit.expiresAtMs === undefined || hit.expiresAtMs > this.#now()) {
        // Least-recently-used order, so a busy client's token survives a burst of one-off tokens.
        // Re-inserting costs a little, so it is done only once eviction is near.
        if (this.#cache.size > this.#cacheSize >>> 1) {
          this.#cache.delete(token);
          this.#cache.set(token, hit);
        }
        return { ok: true, identity: hit, cached: true };
      }
      this.#cache.delete(token);
    }
    const result = await this.#verifyUncached(token);
    if (result.ok) this.#remember(token, result.identity);
    return result;
  }

  #remember(token: string, identity: Identity): void {
    if (this.#cache.size >= this.#cacheSize) {
      // Map iterates in insertion order: the first key is the least recently used entry.
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
    this.#cache.set(token, identity);
  }

  async #verifyUncached(token: string): Promise<IdentityResult> {
    if (token.length > 16_384 || token.split('.').length !== 3) {
      return fail('malformed_token', 'the bearer token is not a compact JWT (header.payload.signature)');
    }
    let alg: string | undefined;
    let iss: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch {
      return fail('malformed_token', 'the bearer token could not be decoded as a JWT');
    }
    const issuer = iss === undefined ? undefined : this.#issuers.get(iss);
    if (!issuer) {
      return fail('unknown_issuer', 'the token was not issued by a trusted issuer (check the "iss" claim)');
    }
    if (!alg || !issuer.config.algorithms.includes(alg)) {
      return fail(
        'unsupported_algorithm',
        `tokens must be signed with one of ${issuer.config.algorithms.join(', ')}; got ${alg ? JSON.stringify(alg).slice(0, 20) : 'none'}`,
      );
    }
    try {
      const { payload } = await jwtVerify(token, issuer.keys, {
        issuer: issuer.config.issuer,
        audience: [...issuer.config.audiences],
        algorithms: [...issuer.config.algorithms],
        clockTolerance: issuer.config.clockToleranceSec,
        // A token without an expiry would be good forever (and cached forever): refuse it.
        requiredClaims: ['exp'],
        currentDate: new Date(this.#now()),
      });
      const claims = issuer.claims.safeParse(payload);
      if (!claims.success) return fail('invalid_claims', claimProblem(issuer.config, claims.error.issues[0]));
      return {
        ok: true,
        cached: false,
        identity: {
          issuer: issuer.config.issuer,
          ...claims.data,
          ...(typeof payload.exp === 'number' ? { expiresAtMs: payload.exp * 1000 } : {}),
        },
      };
    } catch (err) {
      return mapJoseError(err);
    }
  }
}

function fail(code: IdentityErrorCode, message: string): IdentityResult {
  return { ok: false, code, message };
}

function mapJoseError(err: unknown): IdentityResult {
  if (err instanceof errors.JWTExpired) return fail('token_expired', 'the token has expired; get a new one');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return fail('token_not_yet_valid', 'the token is not valid yet (nbf/iat in the future)');
    if (err.claim === 'aud') return fail('invalid_audience', 'the token is not meant for this gateway (check the "aud" claim)');
    if (err.claim === 'iss') return fail('unknown_issuer', 'the token was not issued by a trusted issuer');
    if (err.claim === 'exp') return fail('invalid_claims', 'the token has no expiry ("exp" claim); tokens must expire');
    return fail('invalid_claims', `the token's "${err.claim}" claim is invalid`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return fail('unsupported_algorithm', 'the token is signed with an algorithm this issuer does not allow');
  }
  if (err instanceof errors.JWKSNoMatchingKey) {
    return fail('unknown_key', 'the token was signed with a key the issuer does not publish (unknown "kid")');
  }
  if (err instanceof errors.JWKSMultipleMatchingKeys) {
    return fail('unknown_key', 'the token does not name its key ("kid") and the issuer publishes several');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return fail('invalid_signature', 'the token signature does not verify');
  }
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
    return fail('jwks_unavailable', "the issuer's signing keys could not be loaded; try again shortly");
  }
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) {
    return fail('malformed_token', 'the bearer token is not a valid JWT');
  }
  // Network errors from the JWKS fetch and anything unforeseen: deny, generically.
  return fail('jwks_unavailable', "the issuer's signing keys could not be loaded; try again shortly");
}
