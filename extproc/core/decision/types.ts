/**
 * The decision's input and output, shaped like Envoy's ext_authz `AttributeContext.HttpRequest`
 * and `CheckResponse` but free of protobuf, so the same function serves Envoy (over gRPC) and the
 * embedded edge (in process).
 */

import type { Snapshot } from '../config/snapshot.ts';

import type { DenyCode, DenyStatus } from './denials.ts';

export type { DenyCode, DenyStatus };

export type { RouteKind } from '../catalogue/endpoints.ts';

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
 * Values are strings or numbers only, so they map 1:1 onto a `google.protobuf.Struct`. This one
 * list is the type, the CheckResponse decoder's validation and the access-log reader.
 *
 * user; teams (comma-separated, sorted); provider; model; model_type; account; route_kind;
 * endpoint (the spec that matched, e.g. `tts.sync`); characters (of the TTS `text`, when the body
 * was seen); upstream_path (what the upstream sees: no provider prefix, no `token`);
 * config_version (the snapshot the decision used); accounts (comma-separated, only when more than
 * one account serving the model lets the caller in: the candidates the edge chooses among, `account`
 * being the first).
 */
export const DECISION_METADATA_FIELDS = {
  user: 'string',
  teams: 'string',
  provider: 'string',
  model: 'string',
  model_type: ['tts', 'stt'],
  account: 'string',
  accounts: 'string',
  route_kind: ['rest', 'sse', 'websocket'],
  endpoint: 'string',
  characters: 'count',
  upstream_path: 'string',
  config_version: 'count',
} as const satisfies Record<string, 'string' | 'count' | readonly string[]>;

type FieldValue<K> = K extends 'string' ? string : K extends 'count' ? number : K extends readonly (infer U)[] ? U : never;

export type DecisionMetadata = {
  readonly [K in keyof typeof DECISION_METADATA_FIELDS]?: FieldValue<(typeof DECISION_METADATA_FIELDS)[K]>;
};

/**
 * Reads DecisionMetadata from external plain values (a decoded Struct): unknown keys and values of
 * the wrong kind are dropped; counts may arrive as digit strings (Struct writers differ).
 */
export function readDecisionMetadata(plain: Readonly<Record<string, unknown>>): DecisionMetadata {
  const out: Record<string, string | number> = {};
  for (const [name, kind] of Object.entries(DECISION_METADATA_FIELDS)) {
    const v = plain[name];
    if (kind === 'count') {
      const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
      if (typeof n === 'number' && Number.isFinite(n) && n >= 0) out[name] = n;
    } else if (typeof v === 'string' && (kind === 'string' || (kind as readonly string[]).includes(v))) out[name] = v;
  }
  return out as DecisionMetadata;
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

export interface Deny {
  readonly kind: 'deny';
  /** Always `DENIALS[code].status`; build denials with `deny()` so the two cannot disagree. */
  readonly status: DenyStatus;
  /** Stable snake_case reason, for clients, logs and metrics (one of {@link DENIALS}). */
  readonly code: DenyCode;
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

/**
 * The in-memory entry point to authorization: Envoy's gRPC adapter and the edge both call it.
 * `snapshot` is the one the transport captured at arrival, so the decision, the upstream plan and
 * the metering of a request agree; an in-process authorizer decides with it (the current one when
 * absent), a remote one ignores it (the remote side decides with its own).
 */
export interface Authorizer {
  check(input: CheckInput, snapshot?: Snapshot): Promise<Decision>;
}
