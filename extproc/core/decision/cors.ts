/**
 * Browser callers: the CORS protocol (Fetch standard §3.2) and the `Origin` check of WebSocket
 * upgrades (RFC 6455 §10.2), as one pure verdict per request.
 *
 * Why requests with a refused `Origin` are denied rather than merely left without
 * `Access-Control-Allow-Origin`: a "simple" cross-origin request (a `text/plain` POST with
 * `?token=`) needs no preflight, so the browser sends it, the provider would serve and bill it, and
 * only the page is kept from reading the answer. Browsers cannot forge `Origin`, and SDKs, curl and
 * Node's fetch send none, so refusing on it stops exactly the browser calls nobody allowed.
 *
 * @example
 * corsVerdict('OPTIONS', { origin: 'https://app.example.com', 'access-control-request-method': 'POST' }, policy);
 * // { kind: 'preflight', headers: { 'access-control-allow-origin': 'https://app.example.com', … } }
 */
import type { CorsPolicy } from '../config/snapshot.ts';

/** The request headers the verdict reads, lower-case names (Node's and Envoy's shape alike). */
export interface CorsRequestHeaders {
  readonly origin?: string | readonly string[] | undefined;
  readonly 'access-control-request-method'?: string | readonly string[] | undefined;
}

export type CorsVerdict =
  /** No `Origin`: not a browser's cross-origin call; nothing to check, nothing to add. */
  | { readonly kind: 'none' }
  /** An origin the policy does not admit: refuse (`origin_not_allowed`) before anything else. */
  | { readonly kind: 'refused'; readonly origin: string }
  /** An admitted preflight: answer it at once (204, no authentication) with these headers. */
  | { readonly kind: 'preflight'; readonly headers: Readonly<Record<string, string>> }
  /** An admitted actual request: add these headers to every response, denials included. */
  | { readonly kind: 'allowed'; readonly headers: Readonly<Record<string, string>> };

/** The denial message; names the origin so an operator sees what to add to `cors.allowed_origins`. */
export function originRefusedMessage(origin: string): string {
  const shown = origin.length > 80 ? `${origin.slice(0, 80)}…` : origin;
  return `origin "${shown}" may not call this gateway; an administrator can add it to cors.allowed_origins`;
}

function single(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  // A repeated field (or one Envoy joined with ',') is no serialised origin: it matches nothing.
  return typeof value === 'string' ? value : value.join(',');
}

/** Whether `origin` (the request's `Origin` value) is admitted; `null` and malformed values never are. */
export function originAllowed(origin: string, policy: CorsPolicy | undefined): boolean {
  if (!policy) return false;
  if (policy.allowedOrigins === '*') return origin !== 'null' && /^https?:\/\/[^/\s,]+$/.test(origin);
  return policy.allowedOrigins.has(origin);
}

/**
 * The CORS verdict for one request. A preflight is an `OPTIONS` with `Origin` and
 * `Access-Control-Request-Method` (Fetch §3.2.2); it is answered with the policy's lists whatever
 * method it asks for, and the browser compares them. `Access-Control-Allow-Origin` repeats the
 * caller's origin (as Envoy's CORS filter does), hence `Vary: Origin` for caches.
 */
export function corsVerdict(method: string, headers: CorsRequestHeaders, policy: CorsPolicy | undefined): CorsVerdict {
  const origin = single(headers.origin);
  if (origin === undefined) return { kind: 'none' };
  if (!policy || !originAllowed(origin, policy)) return { kind: 'refused', origin };
  const preflight = method === 'OPTIONS' && single(headers['access-control-request-method']) !== undefined;
  if (preflight) {
    return {
      kind: 'preflight',
      headers: {
        'access-control-allow-origin': origin,
        'access-control-allow-methods': policy.allowedMethods.join(', '),
        ...(policy.allowedHeaders.length > 0 ? { 'access-control-allow-headers': policy.allowedHeaders.join(', ') } : {}),
        'access-control-max-age': String(policy.maxAgeSeconds),
        vary: 'origin',
      },
    };
  }
  return {
    kind: 'allowed',
    headers: {
      'access-control-allow-origin': origin,
      ...(policy.exposedHeaders.length > 0 ? { 'access-control-expose-headers': policy.exposedHeaders.join(', ') } : {}),
      vary: 'origin',
    },
  };
}

/** True for the response fields the gateway's CORS answer owns; the provider's own are replaced. */
export function isCorsResponseHeader(lowerName: string): boolean {
  return lowerName.startsWith('access-control-');
}
