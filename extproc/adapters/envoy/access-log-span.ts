/**
 * Builds the usage span of a request seen through Envoy: the access-log entry (timing, status,
 * bytes, ext_authz metadata) plus what ext_proc saw (trace context, the provider's X-Request-Id).
 * Under Envoy WebSocket frames are invisible, so WebSocket quantities are estimated from byte
 * counts and marked `estimated`. Only allow-listed headers are ever read: the injected provider
 * `authorization` (which ext_proc and access logs can see) never reaches a span.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { readDecisionMetadata, type DecisionMetadata, type RouteKind } from '../../core/decision/types.ts';
import type { SnapshotFor } from '../../core/usage/recent-snapshots.ts';
import { audioSeconds, pcmSeconds, sttFormatFromPath } from '../../core/usage/metering.ts';
import { bodyCharacters, buildSpan, meterOf, type ExchangeFacts, type Usage } from '../../core/usage/span-builder.ts';
import type { UsageSpan } from '../../core/usage/span.ts';
import { fromStruct, type ProtoStruct } from './struct.ts';

export const EXT_AUTHZ_NAMESPACE = 'envoy.filters.http.ext_authz';
/**
 * envoy.yaml's cluster for the voicegate edge (TTS WebSocket routes). The edge decides and meters
 * those sessions from their frames and publishes their spans itself; Envoy's entry would be a second,
 * undecided span of the same session.
 */
export const EDGE_CLUSTER = 'voicegate_edge';

/** What ext_proc contributes to a request's span, keyed by Envoy's x-request-id. */
export interface ExtProcContribution {
  traceparent?: string;
  providerRequestId?: string;
  metadata?: DecisionMetadata;
}

/** DecisionMetadata from the ext_authz namespace of an Envoy `Metadata` message. */
export function decisionMetadataFrom(metadata: unknown): DecisionMetadata | undefined {
  const fm = (metadata as { filter_metadata?: Record<string, unknown> } | null | undefined)?.filter_metadata;
  const ns = fm?.[EXT_AUTHZ_NAMESPACE];
  if (!ns || typeof ns !== 'object') return undefined;
  return readDecisionMetadata(fromStruct(ns as ProtoStruct));
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
        upstream_cluster: z.string().default(''),
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


/**
 * The span of one access-log entry. The span id is derived from the request id, stream id and
 * start time, so an entry delivered twice yields the same span id (and is counted once).
 */
export function spanFromAccessLog(entry: AccessLogEntry, contribution: ExtProcContribution | undefined, snapshotFor: SnapshotFor): UsageSpan {
  return buildSpan(factsFromAccessLog(entry, contribution, snapshotFor));
}

/** The access-log entry (and what ext_proc added) as the span builder's facts. */
export function factsFromAccessLog(entry: AccessLogEntry, contribution: ExtProcContribution | undefined, snapshotFor: SnapshotFor): ExchangeFacts {
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
  const bytesIn = req.request_body_bytes;
  const traceparent = req.request_headers['traceparent'] ?? contribution?.traceparent;
  const requestId = req.request_id;
  return {
    source: 'envoy',
    spanId: createHash('sha256').update(`${requestId}\n${c.stream_id}\n${startMs}\n${pathWithQuery}`).digest('hex').slice(0, 32),
    requestId,
    startedAtMs: startMs,
    durationMs,
    ...(ttfbMs !== undefined ? { ttfbMs } : {}),
    method: req.request_method,
    path: pathWithQuery,
    status,
    decision: denied ? 'deny' : 'allow',
    metadata: md,
    routeKind,
    bytesIn,
    bytesOut: res?.response_body_bytes ?? 0,
    usage: denied ? { estimated: false } : envoyUsage(md, routeKind, bytesIn, durationMs, md.upstream_path ?? pathWithQuery),
    ...(traceparent !== undefined ? { traceparent } : {}),
    providerRequestId: res?.response_headers['x-request-id'] ?? contribution?.providerRequestId ?? '',
    error: c.upstream_transport_failure_reason || c.connection_termination_details || '',
    snapshot: snapshotFor(md.config_version),
  };
}

/** Under Envoy frames and bodies are invisible: quantities come from byte counts, so estimated. */
function envoyUsage(md: DecisionMetadata, routeKind: RouteKind | '', bytesIn: number, durationMs: number, query: string): Usage {
  const meter = meterOf(md);
  if (meter === 'tts-characters') {
    // Every byte a WebSocket client sent counts as a character: an upper bound (JSON envelopes and
    // framing included).
    return routeKind === 'websocket' ? { characters: bytesIn, estimated: true } : bodyCharacters(md, bytesIn);
  }
  if (meter !== 'stt-audio') return { estimated: false };
  // WebSocket: frames and control messages are counted as audio; REST: headers of containers are
  // counted as audio. Both slightly over-estimate.
  const fmt = sttFormatFromPath(query);
  const seconds = fmt.bytesPerSample !== undefined ? pcmSeconds(bytesIn, fmt.sampleRate, fmt.bytesPerSample) : audioSeconds(durationMs / 1000);
  return { audioSeconds: seconds, estimated: true };
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
