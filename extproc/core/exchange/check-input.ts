/**
 * Builds the Envoy-shaped check request from what the edge received, the way Envoy's ext_authz
 * filter fills `attributes.request.http`: path with query, lower-case headers with the HTTP/2
 * pseudo-headers (`host` travels as `:authority`), the request id, and the body on routes that
 * send it.
 */
import type { CheckInput, RouteKind } from '../decision/types.ts';
import { PARTIAL_BODY_HEADER } from '../decision/decide.ts';
import { CATALOGUES, matchEndpoint, parsePublicPath } from '../catalogue/endpoints.ts';

/** What the edge needs to know about a route before deciding. */
export interface RouteTraits {
  /** Whether the decision reads the request body (TTS JSON routes only; never audio uploads). */
  readonly sendsBody: boolean;
  readonly kind: RouteKind;
}

/**
 * Classifies a request by the same endpoint catalogue the decision uses, so the edge and the
 * decision can never disagree about which routes carry a JSON body.
 */
export function routeTraits(method: string, pathWithQuery: string, upgrade: boolean): RouteTraits {
  if (upgrade) return { sendsBody: false, kind: 'websocket' };
  const parsed = parsePublicPath(pathWithQuery);
  const catalogue = parsed ? CATALOGUES.get(parsed.provider) : undefined;
  const match = parsed && catalogue ? matchEndpoint(catalogue, method, parsed.upstreamPath) : undefined;
  if (!match) return { sendsBody: false, kind: 'rest' };
  return { sendsBody: method === 'POST' && match.spec.readsBody, kind: match.spec.kind };
}

export interface CheckInputParts {
  readonly method: string;
  readonly pathWithQuery: string;
  /** Lower-case caller headers, multi-values already joined. */
  readonly headers: Readonly<Record<string, string>>;
  readonly requestId: string;
  readonly scheme: 'http' | 'https';
  readonly body?: Uint8Array;
  /** The body was cut at the decision limit (Envoy's `allow_partial_message`). */
  readonly partialBody?: boolean;
}

/** Envoy marks a truncated body with this header on the check request (the decision reads it). */
export { PARTIAL_BODY_HEADER };

/** Pure mapping from the received request to the decision's input. */
export function buildCheckInput(p: CheckInputParts): CheckInput {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(p.headers)) if (name !== 'host') headers[name] = value;
  const host = p.headers.host;
  headers[':method'] = p.method;
  headers[':path'] = p.pathWithQuery;
  headers[':scheme'] = p.scheme;
  if (host !== undefined) headers[':authority'] = host;
  headers['x-request-id'] = p.requestId;
  if (p.body !== undefined) headers[PARTIAL_BODY_HEADER] = p.partialBody ? 'true' : 'false';
  return {
    method: p.method,
    path: p.pathWithQuery,
    ...(host !== undefined ? { host } : {}),
    headers,
    requestId: p.requestId,
    ...(p.body !== undefined ? { body: p.body } : {}),
  };
}
