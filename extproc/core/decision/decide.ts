/**
 * The authorization decision: a pure function from an Envoy-shaped request, the snapshot in force
 * and the caller's verified identity to allow (with the header mutations Envoy applies) or deny
 * (with a JSON body telling the caller what to fix). No I/O, no clock, no globals.
 */
import type { Snapshot } from '../config/snapshot.ts';
import { CATALOGUES, matchEndpoint, parsePublicPath, type EndpointSpec } from '../catalogue/endpoints.ts';
import type { IdentityResult } from '../identity/identity.ts';
import { TOKEN_QUERY_PARAMETER } from '../identity/token.ts';
import type { CheckInput, Decision, DecisionMetadata, Deny } from './types.ts';
import { CANNOT_DECIDE, CANNOT_DECIDE_MESSAGE, statusOf, type DenyCode } from './denials.ts';
import { readTtsBody } from './tts-body.ts';
import { ambiguousParam, removeQueryParams } from './query.ts';
import { corsVerdict, originRefusedMessage } from './cors.ts';

/**
 * Caller headers that can carry a credential; none may reach the provider. An allow removes them
 * all but `authorization`, which it overwrites with the provider key (Envoy removes after it sets).
 */
export const CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'x-api-key', 'cookie', 'proxy-authorization'];
const REMOVED_WHEN_KEY_SET: readonly string[] = CREDENTIAL_HEADERS.filter((h) => h !== 'authorization');

/** Set by Envoy (`allow_partial_message`) and the edge on Check when the body was cut at the limit. */
export const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';

// Re-exported: transports strip it by this name.
export { TOKEN_QUERY_PARAMETER };

export function decide(input: CheckInput, snapshot: Snapshot | undefined, identity: IdentityResult): Decision {
  if (!snapshot) {
    return authzUnavailable();
  }
  // Before identity: a browser origin nobody allowed is refused whatever it carries, so a
  // preflight-free `text/plain` POST with `?token=` is never served and billed behind the page's back.
  const cors = corsVerdict(input.method, input.headers, snapshot.cors);
  if (cors.kind === 'refused') return deny('origin_not_allowed', originRefusedMessage(cors.origin), {});
  if (!identity.ok) {
    if (identity.code === 'jwks_unavailable') return deny(identity.code, identity.message, {});
    return deny(identity.code, identity.message, {}, {
      'www-authenticate':
        identity.code === 'missing_token'
          ? 'Bearer realm="voicegate"'
          : `Bearer realm="voicegate", error="invalid_token", error_description="${identity.code}"`,
    });
  }
  const who = identity.identity;
  const meta: { -readonly [K in keyof DecisionMetadata]: DecisionMetadata[K] } = {
    user: who.user,
    teams: who.teams.join(','),
    config_version: snapshot.version,
  };

  const parsed = parsePublicPath(input.path);
  const catalogue = parsed && CATALOGUES.get(parsed.provider);
  if (!parsed || !catalogue || !snapshot.providers.has(parsed.provider)) {
    const name = parsed?.provider ?? '';
    return deny('unknown_provider', `no provider "${clip(name)}"; paths start with /{provider}/, e.g. /smallest/waves/v1/…`, meta);
  }
  meta.provider = parsed.provider;

  // Exact, as Envoy's `:method` matchers compare: `post` is no POST route.
  const method = input.method;
  const matched = matchEndpoint(catalogue, method, parsed.upstreamPath);
  if (!matched) {
    return deny('unknown_endpoint', `no ${parsed.provider} endpoint for ${method} ${clip(parsed.upstreamPath)}`, meta);
  }
  const { spec } = matched;
  if (matched.pathModel !== undefined && /%/.test(parsed.upstreamPath)) {
    // The decision would judge the decoded name while the provider receives the raw one.
    return deny('invalid_path', 'percent-encoding is not allowed in the path; write the model name literally', meta);
  }
  meta.endpoint = spec.id;
  meta.route_kind = spec.kind;
  const ambiguous = ambiguousParam(parsed.query, ['model', TOKEN_QUERY_PARAMETER], TOKEN_QUERY_PARAMETER);
  if (ambiguous !== undefined) {
    return deny('ambiguous_parameter', `the query parameter "${ambiguous}" must appear once, spelled literally`, meta);
  }
  const query = new URLSearchParams(parsed.query);

  const encoding = spec.readsBody ? input.headers['content-encoding']?.trim().toLowerCase() : undefined;
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    // A compressed body hides its `model` from the decision; a provider that inflates it would serve it.
    return deny('unsupported_content_encoding', 'send the JSON body uncompressed (no Content-Encoding)', meta);
  }
  const body = spec.readsBody && input.body ? readTtsBody(input.body) : undefined;
  if (body?.characters !== undefined) meta.characters = body.characters;
  if (body?.duplicateKey !== undefined) {
    // Parsers disagree on which of two equal keys wins, so the provider could read another model.
    return deny('ambiguous_parameter', `the JSON body names "${clip(body.duplicateKey)}" more than once`, meta);
  }
  if (body && !body.json && spec.model === 'body-or-query') {
    // A body the decision cannot read hides its `model`: deciding on the query or default model
    // instead would let the provider serve whatever model the whole body names, on an account
    // chosen for another one (a body cut at the inspection limit, UTF-16, a BOM, not an object).
    if (input.headers[PARTIAL_BODY_HEADER] === 'true') {
      return deny('body_too_large', 'the request body is larger than the gateway inspects, so its "model" cannot be checked; send shorter text per request', meta);
    }
    if (input.body && input.body.byteLength > 0) {
      return deny('invalid_body', 'the request body must be a JSON object in UTF-8', meta);
    }
  }

  // The one place the `token` parameter is stripped: the plan and the observer use this path.
  const upstreamPath = removeQueryParams(parsed.query ? `${parsed.upstreamPath}?${parsed.query}` : parsed.upstreamPath, [TOKEN_QUERY_PARAMETER]);
  meta.upstream_path = upstreamPath;

  if (spec.model === 'none') {
    return allowWith(query, [], meta);
  }

  const requested = modelName(spec, matched.pathModel, body?.model, query, snapshot, parsed.provider);
  if (requested === undefined) {
    return deny('model_required', `name a model with the "model" ${spec.model === 'query' ? 'query parameter' : 'body field or query parameter'}`, meta);
  }
  const model = snapshot.models.get(parsed.provider)?.get(requested);
  if (!model) {
    return deny('unknown_model', `model "${clip(requested)}" is not available through this gateway; ${listModels(snapshot, parsed.provider, spec)}`, meta);
  }
  meta.model = model.name;
  meta.model_type = model.type;
  if (spec.model === 'path' && body?.model !== undefined && snapshot.models.get(parsed.provider)?.get(body.model) !== model) {
    // The provider may honour the body's `model` over the path's; only one model may be decided.
    return deny('model_conflict', `the body names model "${clip(body.model)}" but the path names "${model.name}"; send one model`, meta);
  }
  if (spec.type && model.type !== spec.type) {
    return deny('model_type_mismatch', `model "${model.name}" is a ${model.type} model; ${spec.id} needs a ${spec.type} model`, meta);
  }
  // Every account serving the model that this pod knows; the caller may use any it collaborates on.
  const known = model.accounts.flatMap((m) => snapshot.accounts.get(m.account) ?? []);
  const first = known[0];
  if (!first) {
    return deny('no_account', `model "${model.name}" has no provider account configured`, meta);
  }
  const usable = known.filter((a) => a.users.has(who.user) || who.teams.some((t) => a.teams.has(t)));
  const account = usable[0];
  if (!account) {
    meta.account = first.name;
    const names = known.map((a) => `"${a.name}"`);
    return deny(
      'not_entitled',
      `user "${clip(who.user)}" may not use model "${model.name}"; ask an administrator to add you or one of your teams as a collaborator of ${names.length === 1 ? 'account' : 'one of the accounts'} ${names.join(', ')}`,
      meta,
    );
  }
  // The first usable account in configuration order is the one a transport without a ledger
  // (Envoy) uses; with several, `accounts` lists them all and the edge's admission picks the one
  // with most spare units, re-injecting that account's key (adapters/edge/limits.ts).
  meta.account = account.name;
  if (usable.length > 1) meta.accounts = usable.map((a) => a.name).join(',');
  return allowWith(query, [{ key: 'authorization', value: `Bearer ${account.token}` }], meta);
}

/** `query` is the request's query, already parsed by {@link decide}. */
function allowWith(query: URLSearchParams, set: { key: string; value: string }[], meta: DecisionMetadata): Decision {
  const hasToken = query.has(TOKEN_QUERY_PARAMETER);
  return {
    kind: 'allow',
    headersToSet: set,
    // Model-less endpoints (health) get no provider key, so the caller's own authorization is
    // removed instead of overwritten: nothing the caller sends may reach the provider as a credential.
    headersToRemove: set.length === 0 ? CREDENTIAL_HEADERS : REMOVED_WHEN_KEY_SET,
    queryParametersToRemove: hasToken ? [TOKEN_QUERY_PARAMETER] : [],
    metadata: meta,
  };
}

function modelName(
  spec: EndpointSpec,
  pathModel: string | undefined,
  bodyModel: string | undefined,
  query: URLSearchParams,
  snapshot: Snapshot,
  provider: string,
): string | undefined {
  if (spec.model === 'path') return pathModel;
  const fromQuery = query.get('model') ?? undefined;
  const named = spec.model === 'body-or-query' ? (bodyModel ?? fromQuery) : fromQuery;
  if (named !== undefined && named !== '') return named;
  return spec.type ? snapshot.defaultModels.get(provider)?.[spec.type] : undefined;
}

function listModels(snapshot: Snapshot, provider: string, spec: EndpointSpec): string {
  const names = new Set<string>();
  for (const m of snapshot.models.get(provider)?.values() ?? []) {
    if (!spec.type || m.type === spec.type) names.add(m.name);
  }
  return names.size ? `configured ${spec.type ?? ''} models: ${[...names].sort().join(', ')}` : 'no models are configured';
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

/** A denial whose status is the code's, from {@link DENIALS}: there is no status to get wrong. */
export function deny(
  code: DenyCode,
  message: string,
  metadata: DecisionMetadata,
  headers: Record<string, string> = {},
): Deny {
  return { kind: 'deny', status: statusOf(code), code, message, headers, metadata };
}

/**
 * The one "cannot decide" denial (no configuration, authorizer failure, decision service
 * unreachable or unreadable): the same code, status and message wherever it arises, as Envoy's
 * `status_on_error: 503` is one answer for every ext_authz failure.
 */
export function authzUnavailable(): Deny {
  return deny(CANNOT_DECIDE, CANNOT_DECIDE_MESSAGE, {});
}
