/**
 * Applies an allow decision with Envoy's semantics and says where the request goes: header sets
 * (always overwrite-or-add), then header removals, then query-parameter removal, then
 * `auto_host_rewrite`. Pure: no sockets here.
 */
import type { Allow } from '../decision/types.ts';
import { parsePublicPath } from '../catalogue/endpoints.ts';
import { removeQueryParams } from '../decision/query.ts';
import type { Exchange } from './exchange.ts';
import { CREDENTIAL_HEADERS, hopByHopFilter, isWebSocketHandshakeHeader } from './headers.ts';

/** Header values for the upstream request; arrays become repeated fields. */
export type OutgoingHeaderMap = Record<string, string | string[]>;

export interface UpstreamPlan {
  readonly kind: 'upstream';
  readonly url: URL;
  readonly headers: OutgoingHeaderMap;
}

export interface PlanFailure {
  readonly kind: 'no-route';
  readonly message: string;
}

/**
 * Computes the upstream URL and headers from the exchange's own snapshot. The decision's
 * `upstream_path` (prefix rewritten, `token` already stripped by the decision) wins; without it
 * (a remote authorizer that sends none) the path is derived the way envoy.yaml does it: the
 * decision's `queryParametersToRemove` applied, `/{provider}` dropped, `/api/v1/` → `/waves/v1/`.
 */
export function planUpstream(x: Exchange, decision: Allow): UpstreamPlan | PlanFailure {
  const parsed = parsePublicPath(removeQueryParams(x.pathWithQuery, decision.queryParametersToRemove));
  const providerName = decision.metadata.provider ?? parsed?.provider;
  const provider = providerName === undefined ? undefined : x.snapshot?.providers.get(providerName);
  if (!provider) return { kind: 'no-route', message: 'No provider serves this path.' };
  const derived = parsed ? `${parsed.upstreamPath}${parsed.query ? `?${parsed.query}` : ''}` : undefined;
  const upstreamPath = decision.metadata.upstream_path ?? derived;
  if (upstreamPath === undefined || !upstreamPath.startsWith('/')) {
    return { kind: 'no-route', message: 'No provider serves this path.' };
  }
  const url = new URL(provider.upstream.replace(/\/+$/, '') + upstreamPath);

  const hop = hopByHopFilter(x.headers.connection);
  const headers: OutgoingHeaderMap = {};
  for (const [name, values] of Object.entries(x.headers)) {
    // Defence in depth: a caller credential is dropped before the decision's sets, so only the
    // injected one can reach the provider even if a decision omitted a removal.
    if (values === undefined || values.length === 0) continue;
    if (hop(name) || CREDENTIAL_HEADERS.has(name) || name === 'host' || name === 'expect') continue;
    if (x.upgrade && isWebSocketHandshakeHeader(name)) continue;
    headers[name] = values.length === 1 ? (values[0] as string) : [...values];
  }
  for (const { key, value } of decision.headersToSet) headers[key.toLowerCase()] = value;
  for (const name of decision.headersToRemove) delete headers[name.toLowerCase()];
  headers['x-request-id'] = x.requestId;
  headers.host = url.host;
  return { kind: 'upstream', url, headers };
}
