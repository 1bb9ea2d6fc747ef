/**
 * Every error code a client can receive from the gateway, with its HTTP status, in one table.
 * The README's "Denials" table is checked against it (test/docs/denial-table.test.ts), so a code
 * added here without documentation, or documented without existing, fails the suite.
 *
 * `via` says who writes the answer:
 * - `deny`: a decision (a {@link Deny}); Envoy relays it as ext_authz `denied_response`, the edge
 *   writes the same bytes.
 * - `edge`: the embedded edge while proxying. Under Envoy the same conditions are answered by Envoy
 *   itself, in its own words.
 *
 * @example
 * statusOf('not_entitled'); // 403
 */
export const DENIALS = {
  // Identity (core/identity IdentityErrorCode): RFC 6750 §3, with `WWW-Authenticate: Bearer`.
  missing_token: { status: 401, via: 'deny' },
  malformed_token: { status: 401, via: 'deny' },
  unsupported_algorithm: { status: 401, via: 'deny' },
  unknown_issuer: { status: 401, via: 'deny' },
  invalid_audience: { status: 401, via: 'deny' },
  token_expired: { status: 401, via: 'deny' },
  token_not_yet_valid: { status: 401, via: 'deny' },
  unknown_key: { status: 401, via: 'deny' },
  invalid_signature: { status: 401, via: 'deny' },
  invalid_claims: { status: 401, via: 'deny' },
  jwks_unavailable: { status: 503, via: 'deny' },
  /** A `vg_…` service key that is unknown, revoked or expired (one code: no hint that a key existed). */
  invalid_service_key: { status: 401, via: 'deny' },
  // The decision.
  not_entitled: { status: 403, via: 'deny' },
  unknown_provider: { status: 404, via: 'deny' },
  unknown_endpoint: { status: 404, via: 'deny' },
  unknown_model: { status: 404, via: 'deny' },
  model_required: { status: 400, via: 'deny' },
  model_type_mismatch: { status: 400, via: 'deny' },
  body_too_large: { status: 413, via: 'deny' },
  unsupported_content_encoding: { status: 415, via: 'deny' },
  invalid_body: { status: 400, via: 'deny' },
  model_conflict: { status: 400, via: 'deny' },
  no_account: { status: 503, via: 'deny' },
  bad_check_request: { status: 400, via: 'deny' },
  ambiguous_parameter: { status: 400, via: 'deny' },
  invalid_path: { status: 400, via: 'deny' },
  /** A browser origin `cors.allowed_origins` does not admit (core/decision/cors.ts), REST or WebSocket. */
  origin_not_allowed: { status: 403, via: 'deny' },
  /**
   * The one "cannot decide" answer: no configuration loaded, the authorizer threw, or the decision
   * service is unreachable, too slow or answered something unreadable. One code because a client
   * can do one thing about all of them: retry later.
   */
  authz_unavailable: { status: 503, via: 'deny' },
  /**
   * Limits (core/limits): a limit of the caller's user, one of their teams, or the model's account
   * is full. 429 with `Retry-After`, as the provider answers over its own units, so clients that
   * back off from Smallest back off from the gateway too.
   */
  user_limit_exceeded: { status: 429, via: 'deny' },
  team_limit_exceeded: { status: 429, via: 'deny' },
  account_limit_exceeded: { status: 429, via: 'deny' },
  // The edge's own answers while proxying.
  no_route: { status: 404, via: 'edge' },
  upgrade_not_allowed: { status: 403, via: 'edge' },
  bad_upgrade: { status: 400, via: 'edge' },
  upstream_unreachable: { status: 502, via: 'edge' },
  upstream_timeout: { status: 504, via: 'edge' },
  internal_error: { status: 500, via: 'edge' },
  request_timeout: { status: 408, via: 'edge' },
} as const satisfies Readonly<Record<string, { readonly status: number; readonly via: 'deny' | 'edge' }>>;

export type DenialCode = keyof typeof DENIALS;
type Via<V> = { [K in DenialCode]: (typeof DENIALS)[K]['via'] extends V ? K : never }[DenialCode];
/** Codes a decision can carry. */
export type DenyCode = Via<'deny'>;
/** Codes only the embedded edge writes. */
export type GatewayErrorCode = Via<'edge'>;
export type StatusOf<C extends DenialCode> = (typeof DENIALS)[C]['status'];
/** Every status a decision denies with. */
export type DenyStatus = StatusOf<DenyCode>;

/** The one "cannot decide" code; see {@link DENIALS}. */
export const CANNOT_DECIDE = 'authz_unavailable' satisfies DenyCode;
/** What a client reads for {@link CANNOT_DECIDE}, whatever the cause (causes go to the logs). */
export const CANNOT_DECIDE_MESSAGE = 'The gateway cannot decide on this request right now; try again shortly.';

/**
 * Span `error` values for exchanges that ended without an answer the gateway wrote: the caller left,
 * the upstream reset after the head, or a stream went silent. Never a response code, so kept apart.
 */
export const EXCHANGE_FAILURES = [
  'client_aborted', 'upstream_reset', 'stream_idle_timeout', 'idle_timeout', 'drain_timeout',
  // A WebSocket session the edge ended mid-way (core/decision/recheck.ts); `token_expired` too,
  // which is also the 401 code of a token refused up front.
  'entitlement_revoked', 'account_changed', 'max_session_duration',
] as const;
export type ExchangeFailure = (typeof EXCHANGE_FAILURES)[number];

export function statusOf<C extends DenialCode>(code: C): StatusOf<C> {
  return DENIALS[code].status as StatusOf<C>;
}

export function isDenialCode(code: string): code is DenialCode {
  return Object.hasOwn(DENIALS, code);
}

export function isDenyCode(code: string): code is DenyCode {
  return isDenialCode(code) && DENIALS[code].via === 'deny';
}
