/**
 * Applies an allow decision with Envoy's semantics and says where the request goes: header sets
 * (always overwrite-or-add), then header removals, then query-parameter removal, then
 * `auto_host_rewrite`. Pure: no sockets here.
 */
import type { Allow } from '../decision/types.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { TOKEN_QUERY_PARAMETER } from '../decision/decide.ts';
import { parsePublicPath } from '../catalogue/endpoints.ts';
import { CREDENTIAL_HEADERS, hopByHopFilter, isWebSocketHandshakeHeader } from './headers.ts';
import { removeQueryParams } from './query.ts';

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

export interface PlanInput {
  readonly snapshot: Snapshot;
  readonly decision: Allow;
  readonly pathWithQuery: string;
  /** Caller headers as `headersDistinct` gives them (lower-case, every value kept). */
  readonly callerHeaders: Readonly<Record<string, readonly string[] | undefined>>;
  readonly requestId: string;
  /** Upgrade requests: the WebSocket client writes its own handshake fields. */
  readonly websocket: boolean;
}

/**
 * Computes the upstream URL and headers. The decision's `upstream_path` wins; without it the path
 * is derived the way envoy.yaml's prefix rewrite does (drop `/{provider}`, `/api/v1/` → `/waves/v1/`).
 */
export function planUpstream(p: PlanInput): UpstreamPlan | PlanFailure {
  const parsed = parsePublicPath(p.pathWithQuery);
  const providerName = p.decision.metadata.provider ?? parsed?.provider;
  const provider = providerName === undefined ? undefined : p.snapshot.providers.get(providerName);
  if (!provider) return { kind: 'no-route', message: 'No provider serves this path.' };
  const derived = parsed ? `${parsed.upstreamPath}${parsed.query ? `?${parsed.query}` : ''}` : undefined;
  const upstreamPath = p.decision.metadata.upstream_path ?? derived;
  if (upstreamPath === undefined || !upstreamPath.startsWith('/')) {
    return { kind: 'no-route', message: 'No provider serves this path.' };
  }
  // The browser query credential is stripped even if a decision forgot to list it.
  const cleaned = removeQueryParams(upstreamPath, [...p.decision.queryParametersToRemove, TOKEN_QUERY_PARAMETER]);
  const url = new URL(provider.upstream.replace(/\/+$/, '') + cleaned);

  const hop = hopByHopFilter(p.callerHeaders.connection);
  const headers: OutgoingHeaderMap = {};
  for (const [name, values] of Object.entries(p.callerHeaders)) {
    // Defence in depth: a caller credential is dropped before the decision's sets, so only the
    // injected one can reach the provider even if a decision omitted a removal.
    if (values === undefined || values.length === 0) continue;
    if (hop(name) || CREDENTIAL_HEADERS.has(name) || name === 'host' || name === 'expect') continue;
    if (p.websocket && isWebSocketHandshakeHeader(name)) continue;
    headers[name] = values.length === 1 ? (values[0] as string) : [...values];
  }
  for (const { key, value } of p.decision.headersToSet) headers[key.toLowerCase()] = value;
  for (const name of p.decision.headersToRemove) delete headers[name.toLowerCase()];
  headers['x-request-id'] = p.requestId;
  headers.host = url.host;
  return { kind: 'upstream', url, headers };
}
