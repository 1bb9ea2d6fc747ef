/**
 * The configuration document as written in YAML (snake_case, as operators write it). Validated
 * with zod; `compile.ts` turns a valid document into a {@link Snapshot}.
 */
import { z } from 'zod';

/** `env:VAR`, `file:PATH` or — for values that are not secret — a literal string. */
const secretRef = z
  .string()
  .min(1)
  .refine((s) => s.startsWith('env:') || s.startsWith('file:'), {
    message: 'must be a reference: env:VAR or file:PATH (secrets are never written inline)',
  });

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/i, 'must be 1–63 letters, digits, dot, dash or underscore');

const decimal = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal written as a string, e.g. "0.0195"');

const jwk = z.record(z.string(), z.unknown());

export const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/**
 * Prefixes the gateway gives names itself: `service:<name>` is the user a service key is
 * authorized as, and `user:` / `team:` / `system:` qualify the store's subjects and actors. An
 * issuer with one of these names would qualify its users into them (`service` makes `sub: ci` the
 * service account `service:ci`), so it could pose as whoever holds that name.
 */
export const RESERVED_ISSUER_NAMES: readonly string[] = ['service', 'team', 'user', 'system'];

/** An issuer's name qualifies its users, teams and roles (`corp` → `corp:alice`): no `:` in it. */
const issuerName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,30}$/, 'must be 1–31 lower-case letters, digits, dot, dash or underscore (no ":")')
  .refine((n) => !RESERVED_ISSUER_NAMES.includes(n), {
    message: `is reserved (${RESERVED_ISSUER_NAMES.join(', ')}): the gateway names its own principals with these prefixes, e.g. service:<name> for service keys; choose another name`,
  });

const issuer = z
  .strictObject({
    issuer: z.string().min(1),
    /**
     * Qualifies the names this issuer's tokens carry: `corp` makes `sub: alice` the user
     * `corp:alice` and team `voice` the team `corp:voice`, so two issuers never share a user.
     * At most one issuer may leave it out; its names stay plain (`alice`).
     */
    name: issuerName.optional(),
    audiences: z.array(z.string().min(1)).min(1),
    jwks_url: z.url({ protocol: /^https?$/ }).optional(),
    /** Inline JWKS object, or `file:PATH` to a JWKS JSON file. */
    jwks: z.union([z.strictObject({ keys: z.array(jwk).min(1) }), secretRef]).optional(),
    algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256', 'ES256', 'EdDSA']),
    claims: z
      .strictObject({
        user: z.string().min(1).default('sub'),
        teams: z.string().min(1).default('teams'),
        roles: z.string().min(1).default('roles'),
      })
      .default({ user: 'sub', teams: 'teams', roles: 'roles' }),
    clock_skew_seconds: z.number().int().min(0).max(300).default(30),
    dev_signing_key: secretRef.optional(),
  })
  .refine((i) => (i.jwks_url === undefined) !== (i.jwks === undefined), {
    message: 'set exactly one of jwks_url or jwks',
  });

const provider = z.strictObject({
  upstream: z.url({ protocol: /^https?$/ }).default('https://api.smallest.ai'),
  default_models: z
    .strictObject({ tts: name.optional(), stt: name.optional() })
    .default({}),
});

const account = z.strictObject({
  name,
  provider: name.default('smallest'),
  token: secretRef,
  concurrency: z.number().int().min(1).max(10_000).default(1),
  /**
   * TTS WebSocket connections the provider allows per unit: its documents say 5 in one place and 3
   * in another, so it is the operator's to set (core/limits: slots = concurrency × ws_per_unit).
   */
  ws_per_unit: z.number().int().min(1).max(100).default(5),
  collaborators: z
    .strictObject({
      users: z.array(z.string().min(1)).default([]),
      teams: z.array(z.string().min(1)).default([]),
    })
    .default({ users: [], teams: [] }),
});

/** A user or team name as tokens carry it (qualified `corp:alice` beside named issuers). */
const principalName = z.string().min(1).max(256);

/**
 * A session lifetime bound, seconds. The edge's `--max-session` stays the ceiling (a larger value
 * here changes nothing), and the smallest bound that applies wins. 0 is refused: it would end every
 * session as it opens (remove the entitlement instead); a week is far beyond any ceiling.
 */
const maxSessionSeconds = z.number().int().min(1).max(604_800);

/**
 * Limits of one user or team (core/limits). Each is optional, but an entry must set one; zero is
 * refused because it would silently shut the principal out (remove the collaborator instead).
 */
const principalLimitFields = {
  /** Concurrent units: REST/SSE syntheses, syntheses on TTS WebSockets, STT REST and STT WebSockets. */
  max_units: z.number().int().min(1).max(100_000).optional(),
  /** Open WebSockets (TTS and STT). */
  max_sessions: z.number().int().min(1).max(100_000).optional(),
  /** Admissions in any 60 s (sliding window): requests, WebSocket upgrades, syntheses on a socket. */
  requests_per_minute: z.number().int().min(1).max(100_000).optional(),
  /** Longest a WebSocket session or SSE stream of this principal lasts (core/decision/recheck.ts). */
  max_session_seconds: maxSessionSeconds.optional(),
};

const anyLimitSet = (l: { max_units?: number; max_sessions?: number; requests_per_minute?: number; max_session_seconds?: number }): boolean =>
  l.max_units !== undefined || l.max_sessions !== undefined || l.requests_per_minute !== undefined || l.max_session_seconds !== undefined;

const principalLimits = z
  .strictObject(principalLimitFields)
  .refine(anyLimitSet, { message: 'set at least one of max_units, max_sessions, requests_per_minute, max_session_seconds' });

/**
 * A team's bounded wait (core/limits/waiters.ts): a request or WebSocket upgrade refused for
 * concurrency queues, fairly across teams, instead of a 429 at once. Capped because a waiter
 * holds an open client connection: 30 s is past most HTTP clients' own timeouts, and 1,000
 * waiters per team bounds the work each freed unit does.
 */
const teamWait = z.strictObject({
  max_ms: z.number().int().min(1).max(30_000),
  max_waiters: z.number().int().min(1).max(1_000),
});

/** A team's limits: a user's, plus `wait` (alone it waits on the accounts' units). */
const teamLimits = z
  .strictObject({ ...principalLimitFields, wait: teamWait.optional() })
  .refine((l) => anyLimitSet(l) || l.wait !== undefined, {
    message: 'set at least one of max_units, max_sessions, requests_per_minute, max_session_seconds, wait',
  });

const model = z.strictObject({
  name,
  provider: name.default('smallest'),
  type: z.enum(['tts', 'stt']),
  account: name,
  aliases: z.array(name).default([]),
  /** Longest a WebSocket session or SSE stream on this model lasts; see {@link maxSessionSeconds}. */
  max_session_seconds: maxSessionSeconds.optional(),
  price: z
    .strictObject({
      per_1k_chars: decimal.optional(),
      per_minute: decimal.optional(),
      per_minute_streaming: decimal.optional(),
    })
    .default({}),
});

/**
 * An origin exactly as a browser serialises it in `Origin` (RFC 6454 §6.1): lower-case scheme and
 * host, no path, no default port. Anything else would never match, so it is refused up front.
 */
const origin = z.string().superRefine((s, ctx) => {
  if (s === '*') return;
  let canonical: string | undefined;
  try {
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:') canonical = u.origin;
  } catch {
    // reported below
  }
  if (canonical !== s) {
    ctx.addIssue({
      code: 'custom',
      message: `must be an origin as browsers send it, scheme://host[:port] with no path${canonical ? ` (did you mean "${canonical}"?)` : ''}, or "*"`,
    });
  }
});

/** RFC 9110 §5.6.2 token: what a method or a header name may be. */
const token = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP token (letters, digits, -)');

/** Defaults of `cors`: what the SDK-less browser caller of the Smallest API needs. */
export const CORS_DEFAULTS = {
  allowed_methods: ['GET', 'POST'],
  allowed_headers: ['authorization', 'content-type', 'x-request-id', 'traceparent', 'tracestate'],
  // The provider's ids (X-Request-Id, X-Session-Id, their X-External-* echoes) and Retry-After of a 429/503.
  expose_headers: ['x-request-id', 'x-session-id', 'x-external-request-id', 'x-external-session-id', 'retry-after'],
  max_age_seconds: 600,
} as const;

/** `cors:` — browser origins allowed to call (REST with CORS, and WebSocket upgrades). */
export const corsConfig = z
  .strictObject({
    allowed_origins: z.array(origin).default([]),
    // Fetch compares methods case-sensitively; upper case is how every client sends these.
    allowed_methods: z.array(token.regex(/^[A-Z]+$/, 'must be an upper-case method')).min(1).default([...CORS_DEFAULTS.allowed_methods]),
    allowed_headers: z.array(token).default([...CORS_DEFAULTS.allowed_headers]),
    expose_headers: z.array(token).default([...CORS_DEFAULTS.expose_headers]),
    // Chromium caps a cached preflight at 7200 s, Firefox at 86400 s.
    max_age_seconds: z.number().int().min(0).max(86_400).default(CORS_DEFAULTS.max_age_seconds),
  })
  .refine((c) => !c.allowed_origins.includes('*') || c.allowed_origins.length === 1, {
    message: '"*" admits every origin, so it must be the only entry',
    path: ['allowed_origins'],
  });

export const configDocument = z.strictObject({
  version: z.literal(1),
  identity: z.strictObject({ issuers: z.array(issuer).min(1) }),
  providers: z.record(name, provider).refine((p) => Object.keys(p).length > 0, {
    message: 'define at least one provider',
  }),
  accounts: z.array(account).min(1),
  models: z.array(model).min(1),
  limits: z
    .strictObject({
      max_decision_body_bytes: z.number().int().min(1024).max(1 << 20).default(65_536),
      /** Per-user admission limits (core/limits), keyed by the user's (qualified) name. */
      users: z.record(principalName, principalLimits).default({}),
      /** Per-team admission limits, keyed by team name; every limited team of a caller applies. */
      teams: z.record(principalName, teamLimits).default({}),
    })
    .default({ max_decision_body_bytes: 65_536, users: {}, teams: {} }),
  /** Browser callers; absent, every request that carries `Origin` is refused. */
  cors: corsConfig.optional(),
});

export type ConfigDocument = z.infer<typeof configDocument>;
