/**
 * The decision's input and output, shaped like Envoy's ext_authz `AttributeContext.HttpRequest`
 * and `CheckResponse` but free of protobuf, so the same function serves Envoy (over gRPC) and the
 * embedded edge (in process).
 */

export type RouteKind = 'rest' | 'sse' | 'websocket';

/** What Envoy sends in `attributes.request.http`. */
export interface CheckInput {
  readonly method: string;
  /** Path including the query string, exactly as Envoy sends `:path`. */
  readonly path: string;
  readonly host?: string;
  /** Lower-case header names; values as received. Pseudo-headers may be present. */
  readonly headers: Readonly<Record<string, string>>;
  /** Request body when the route sends it (TTS JSON routes), possibly truncated. */
  readonly body?: Uint8Array;
  /** Envoy's `x-request-id` (`attributes.request.http.id`). */
  readonly requestId?: string;
}

/**
 * Dynamic metadata attached to an allowed (or identified-then-denied) request. Lands in Envoy's
 * `envoy.filters.http.ext_authz` namespace; access logs, ext_proc and the edge read it back.
 * Values are strings or numbers only, so they map 1:1 onto a `google.protobuf.Struct`.
 */
export interface DecisionMetadata {
  readonly user?: string;
  /** Comma-separated team names, sorted. */
  readonly teams?: string;
  readonly provider?: string;
  readonly model?: string;
  readonly model_type?: 'tts' | 'stt';
  readonly account?: string;
  readonly route_kind?: RouteKind;
  /** The endpoint spec that matched, e.g. `tts.sync`, `stt.ws`. */
  readonly endpoint?: string;
  /** Characters of the TTS `text` when the body was seen. */
  readonly characters?: number;
  /** The path the upstream will see, without the gateway's provider prefix and without `token`. */
  readonly upstream_path?: string;
  /** Snapshot version the decision used. */
  readonly config_version?: number;
}

export interface HeaderToSet {
  readonly key: string;
  readonly value: string;
}

export interface Allow {
  readonly kind: 'allow';
  /** Always applied with OVERWRITE_IF_EXISTS_OR_ADD semantics. */
  readonly headersToSet: readonly HeaderToSet[];
  /** Applied after the sets (Envoy's order); never contains a header that is also set. */
  readonly headersToRemove: readonly string[];
  readonly queryParametersToRemove: readonly string[];
  readonly metadata: DecisionMetadata;
}

export type DenyStatus = 400 | 401 | 403 | 404 | 413 | 429 | 503;

export interface Deny {
  readonly kind: 'deny';
  readonly status: DenyStatus;
  /** Stable snake_case reason, for clients, logs and metrics. */
  readonly code: string;
  /** What the caller should fix. Never contains a credential. */
  readonly message: string;
  /** Extra response headers (e.g. `www-authenticate`). `content-type` is always JSON. */
  readonly headers: Readonly<Record<string, string>>;
  /** Whatever is known about the caller at the time of denial (user, model…). */
  readonly metadata: DecisionMetadata;
}

export type Decision = Allow | Deny;

/** The JSON body every denial carries. */
export function denialBody(d: Deny): string {
  return JSON.stringify({ error: { code: d.code, message: d.message } });
}

/** The in-memory entry point to authorization: Envoy's gRPC adapter and the edge both call it. */
export interface Authorizer {
  check(input: CheckInput): Promise<Decision>;
}
