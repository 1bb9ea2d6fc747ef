/**
 * Builds the Envoy-shaped check request from what the edge received, the way Envoy's ext_authz
 * filter fills `attributes.request.http`: path with query, lower-case headers with the HTTP/2
 * pseudo-headers (`host` travels as `:authority`), the request id, and the body on routes that
 * send it.
 */
import type { CheckInput, RouteKind } from '../decision/types.ts';
import { PARTIAL_BODY_HEADER } from '../decision/decide.ts';
import { CATALOGUES, matchEndpoint, parsePublicPath } from '../catalogue/endpoints.ts';
import type { Exchange } from './exchange.ts';
import { flattenHeaders } from './headers.ts';

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

/** Body bytes the decision reads (TTS JSON routes), as Envoy's `with_request_body` sends them. */
export interface DecisionBody {
  readonly bytes: Uint8Array;
  /** The body was cut at the decision limit (Envoy's `allow_partial_message`). */
  readonly partial: boolean;
}

/** Envoy marks a truncated body with this header on the check request (the decision reads it). */
export { PARTIAL_BODY_HEADER };

/** Pure mapping from the received exchange to the decision's input. */
export function buildCheckInput(x: Exchange, body?: DecisionBody): CheckInput {
  const headers = flattenHeaders(x.headers);
  const host = headers.host;
  delete headers.host;
  headers[':method'] = x.method;
  headers[':path'] = x.pathWithQuery;
  headers[':scheme'] = x.scheme;
  if (host !== undefined) headers[':authority'] = host;
  headers['x-request-id'] = x.requestId;
  if (body !== undefined) headers[PARTIAL_BODY_HEADER] = body.partial ? 'true' : 'false';
  return {
    method: x.method,
    path: x.pathWithQuery,
    ...(host !== undefined ? { host } : {}),
    headers,
    requestId: x.requestId,
    ...(body !== undefined ? { body: body.bytes } : {}),
  };
}
