/**
 * Builds the usage span of a request seen through Envoy: the access-log entry (timing, status,
 * bytes, ext_authz metadata) plus what ext_proc saw (trace context, the provider's X-Request-Id).
 * Under Envoy WebSocket frames are invisible, so WebSocket quantities are estimated from byte
 * counts and marked `estimated`. Only allow-listed headers are ever read: the injected provider
 * `authorization` (which ext_proc and access logs can see) never reaches a span.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { DecisionMetadata, RouteKind } from '../../core/decision/types.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import { splitTeams } from '../../core/usage/usage-observer.ts';
import { audioSeconds, pcmSeconds, sttFormatFromPath } from '../../core/usage/metering.ts';
import { costUsd, findModel, isBillableStatus } from '../../core/usage/pricing.ts';
import { SPAN_SCHEMA, traceContext, type UsageSpan } from '../../core/usage/span.ts';

export const EXT_AUTHZ_NAMESPACE = 'envoy.filters.http.ext_authz';

/** What ext_proc contributes to a request's span, keyed by Envoy's x-request-id. */
export interface ExtProcContribution {
  traceparent?: string;
  providerRequestId?: string;
  metadata?: DecisionMetadata;
}

// --- google.protobuf.Struct as proto-loader decodes it (oneofs: true) --------------------------
const valueSchema: z.ZodType<unknown> = z.lazy(() =>
  z
    .object({
      kind: z.string().optional(),
      stringValue: z.string().optional(),
      numberValue: z.number().optional(),
      boolValue: z.boolean().optional(),
    })
    .passthrough(),
);
const structSchema = z.object({ fields: z.record(z.string(), valueSchema).default({}) }).passthrough();

/** A Struct's scalar fields as plain values (nested lists/structs are ignored). */
export function structToRecord(struct: unknown): Record<string, string | number | boolean> {
  const s = structSchema.safeParse(struct);
  if (!s.success) return {};
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(s.data.fields)) {
    const val = v as { kind?: string; stringValue?: string; numberValue?: number; boolValue?: boolean };
    if (val.kind === 'stringValue' && val.stringValue !== undefined) out[k] = val.stringValue;
    else if (val.kind === 'numberValue' && val.numberValue !== undefined) out[k] = val.numberValue;
    else if (val.kind === 'boolValue' && val.boolValue !== undefined) out[k] = val.boolValue;
  }
  return out;
}

const ROUTE_KINDS: readonly RouteKind[] = ['rest', 'sse', 'websocket'];

/** DecisionMetadata from the ext_authz namespace of an Envoy `Metadata` message. */
export function decisionMetadataFrom(metadata: unknown): DecisionMetadata | undefined {
  const fm = (metadata as { filter_metadata?: Record<string, unknown> } | null | undefined)?.filter_metadata;
  const ns = fm?.[EXT_AUTHZ_NAMESPACE];
  if (!ns) return undefined;
  const r = structToRecord(ns);
  const str = (k: string) => (typeof r[k] === 'string' ? (r[k] as string) : undefined);
  const num = (k: string) => (typeof r[k] === 'number' ? (r[k] as number) : typeof r[k] === 'string' && /^\d+$/.test(r[k] as string) ? Number(r[k]) : undefined);
  const mt = str('model_type');
  const rk = str('route_kind');
  const md: Record<string, unknown> = {
    user: str('user'),
    teams: str('teams'),
    provider: str('provider'),
    model: str('model'),
    model_type: mt === 'tts' || mt === 'stt' ? mt : undefined,
    account: str('account'),
    route_kind: ROUTE_KINDS.includes(rk as RouteKind) ? rk : undefined,
    endpoint: str('endpoint'),
    characters: num('characters'),
    upstream_path: str('upstream_path'),
    config_version: num('config_version'),
  };
  for (const k of Object.keys(md)) if (md[k] === undefined) delete md[k];
  return md as DecisionMetadata;
}

// --- HTTPAccessLogEntry (only the fields read) --------------------------------------------------
const u64 = z.union([z.string(), z.number()]).transform(Number).catch(0);
const pbDuration = z.object({ seconds: u64, nanos: z.number().default(0) }).nullish();
const strMap = z.record(z.string(), z.string()).default({});

export const accessLogEntrySchema = z
  .object({
    common_properties: z
      .object({
        start_time: pbDuration,
        duration: pbDuration,
        time_to_last_downstream_tx_byte: pbDuration,
        time_to_first_downstream_tx_byte: pbDuration,
        metadata: z.unknown().optional(),
        stream_id: z.string().default(''),
        response_flags: z.object({ unauthorized_details: z.unknown().nullish() }).passthrough().nullish(),
        connection_termination_details: z.string().default(''),
        upstream_transport_failure_reason: z.string().default(''),
      })
      .passthrough(),
    request: z
      .object({
        request_method: z.string().default(''),
        path: z.string().default(''),
        original_path: z.string().default(''),
        authority: z.string().default(''),
        request_id: z.string().default(''),
        request_body_bytes: u64.default(0),
        request_headers: strMap,
      })
      .passthrough()
      .nullish(),
    response: z
      .object({
        response_code: z.object({ value: z.number() }).nullish(),
        response_body_bytes: u64.default(0),
        response_headers: strMap,
        response_code_details: z.string().default(''),
      })
      .passthrough()
      .nullish(),
  })
  .passthrough();

export type AccessLogEntry = z.output<typeof accessLogEntrySchema>;

const durMs = (d: { seconds: number; nanos: number } | null | undefined) => (d ? d.seconds * 1000 + d.nanos / 1e6 : undefined);
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * The span of one access-log entry. The span id is derived from the request id, stream id and
 * start time, so an entry delivered twice yields the same span id (and is counted once).
 */
export function spanFromAccessLog(entry: AccessLogEntry, contribution: ExtProcContribution | undefined, snapshot: Snapshot | undefined): UsageSpan {
  const c = entry.common_properties;
  const req = entry.request ?? { request_method: '', path: '', original_path: '', authority: '', request_id: '', request_body_bytes: 0, request_headers: {} };
  const res = entry.response;
  const md: DecisionMetadata = decisionMetadataFrom(c.metadata) ?? contribution?.metadata ?? {};
  const startMs = durMs(c.start_time) ?? Date.now();
  const durationMs = durMs(c.duration) ?? durMs(c.time_to_last_downstream_tx_byte) ?? 0;
  const ttfbMs = durMs(c.time_to_first_downstream_tx_byte);
  const status = res?.response_code?.value ?? 0;
  const pathWithQuery = req.original_path || req.path;
  const routeKind: RouteKind | '' = md.route_kind ?? (status === 101 ? 'websocket' : '');
  const denied = c.response_flags?.unauthorized_details != null;
  const provider = md.provider ?? '';
  const model = findModel(snapshot, provider, md.model ?? '');
  const modelType = md.model_type ?? model?.type ?? '';
  const bytesIn = req.request_body_bytes;
  const bytesOut = res?.response_body_bytes ?? 0;

  let characters: number | undefined;
  let seconds: number | undefined;
  let estimated = false;
  if (!denied && modelType === 'tts') {
    if (routeKind === 'websocket') {
      // Frames are invisible: every byte the client sent is counted as a character, an upper bound
      // (JSON envelopes and WebSocket framing included).
      characters = bytesIn;
      estimated = true;
    } else characters = md.characters;
  } else if (!denied && modelType === 'stt') {
    const fmt = sttFormatFromPath(pathWithQuery);
    // WebSocket: frames and control messages are counted as audio; REST: headers of containers are
    // counted as audio. Both slightly over-estimate.
    seconds = fmt.bytesPerSample !== undefined ? pcmSeconds(bytesIn, fmt.sampleRate, fmt.bytesPerSample) : audioSeconds(durationMs / 1000);
    estimated = true;
  }
  const billable = !denied && isBillableStatus(status);
  const traceparent = req.request_headers['traceparent'] ?? contribution?.traceparent;
  const tc = traceContext(traceparent);
  const requestId = req.request_id;
  const spanId = createHash('sha256').update(`${requestId}\n${c.stream_id}\n${startMs}\n${pathWithQuery}`).digest('hex').slice(0, 32);
  const upstream = snapshot?.providers.get(provider)?.upstream;
  return {
    schema: SPAN_SCHEMA,
    spanId,
    traceId: tc.traceId,
    parentSpanId: tc.parentSpanId,
    source: 'envoy',
    startTime: new Date(startMs).toISOString(),
    endTime: new Date(startMs + durationMs).toISOString(),
    durationMs: round3(durationMs),
    ...(ttfbMs !== undefined ? { ttfbMs: round3(ttfbMs) } : {}),
    method: req.request_method,
    path: pathWithQuery.split('?')[0] ?? '',
    status,
    decision: denied ? 'deny' : 'allow',
    user: md.user ?? '',
    teams: splitTeams(md.teams),
    provider,
    model: md.model ?? '',
    modelType,
    account: md.account ?? '',
    routeKind,
    endpoint: md.endpoint ?? '',
    requestId,
    providerRequestId: res?.response_headers['x-request-id'] ?? contribution?.providerRequestId ?? '',
    bytesIn,
    bytesOut,
    ...(characters !== undefined ? { characters } : {}),
    ...(seconds !== undefined ? { audioSeconds: seconds } : {}),
    estimated,
    costUsd: billable ? costUsd(model?.price, routeKind, { characters, audioSeconds: seconds }) : '0',
    configVersion: md.config_version ?? snapshot?.version ?? 0,
    error: c.upstream_transport_failure_reason || c.connection_termination_details || '',
    serverAddress: upstream ? safeHost(upstream) : '',
  };
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

/**
 * Contributions from ext_proc waiting for their access-log entry. Bounded (oldest evicted first)
 * and time-limited, since a request whose access log never comes must not leak memory.
 */
export class EnvoyCorrelator {
  readonly #entries = new Map<string, { at: number; value: ExtProcContribution }>();
  readonly #max: number;
  readonly #ttlMs: number;

  constructor(max = 100_000, ttlMs = 6 * 3600_000) {
    this.#max = max;
    this.#ttlMs = ttlMs;
  }

  /** Merges `patch` into the contribution of `requestId`. */
  merge(requestId: string, patch: ExtProcContribution): void {
    if (!requestId) return;
    const now = Date.now();
    const prev = this.#entries.get(requestId);
    this.#entries.set(requestId, { at: prev?.at ?? now, value: { ...prev?.value, ...patch } });
    while (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!);
    for (const [k, v] of this.#entries) {
      if (now - v.at <= this.#ttlMs) break;
      this.#entries.delete(k);
    }
  }

  /** Removes and returns the contribution of `requestId`. */
  take(requestId: string): ExtProcContribution | undefined {
    const e = this.#entries.get(requestId);
    this.#entries.delete(requestId);
    return e?.value;
  }

  get size(): number {
    return this.#entries.size;
  }
}
