/**
 * Turns usage spans into OpenTelemetry spans with their own ids and times, and exports them over
 * OTLP/HTTP. Attribute names follow OTel semantic conventions where one exists (`http.*`, `url.*`,
 * `server.*`, `gen_ai.*`), `voicegate.*` otherwise. The OTel span id is the first 8 bytes of the
 * usage span id (OTel span ids are 8 bytes; usage span ids are 16 for collision-free dedupe).
 */
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { isErrorSpan, otelSpanId, type UsageSpan } from '../../core/usage/span.ts';


const resource = resourceFromAttributes({ 'service.name': 'voicegate' });
const scope = { name: 'voicegate.usage', version: '1' };

function hrTime(iso: string, extraMs = 0): HrTime {
  const ms = Date.parse(iso) + extraMs;
  const secs = Math.floor(ms / 1000);
  return [secs, Math.round((ms - secs * 1000) * 1e6)];
}

function operation(span: UsageSpan): string {
  if (span.modelType === 'tts') return 'text_to_speech';
  if (span.modelType === 'stt') return 'speech_to_text';
  return 'unknown';
}

/** OTel attributes of a usage span. */
export function otelAttributes(span: UsageSpan): Attributes {
  const a: Attributes = {
    'http.request.method': span.method,
    'http.response.status_code': span.status,
    'url.path': span.path,
    'gen_ai.system': span.provider === 'smallest' ? 'smallest' : span.provider,
    'gen_ai.request.model': span.model,
    'gen_ai.operation.name': operation(span),
    'voicegate.user': span.user,
    'voicegate.teams': span.teams,
    'voicegate.account': span.account,
    'voicegate.route_kind': span.routeKind,
    'voicegate.endpoint': span.endpoint,
    'voicegate.decision': span.decision,
    'voicegate.request_id': span.requestId,
    'voicegate.provider_request_id': span.providerRequestId,
    'voicegate.bytes_in': span.bytesIn,
    'voicegate.bytes_out': span.bytesOut,
    'voicegate.cost_usd': span.costUsd,
    'voicegate.estimated': span.estimated,
    'voicegate.source': span.source,
    'voicegate.config_version': span.configVersion,
  };
  if (span.serverAddress) a['server.address'] = span.serverAddress;
  if (span.characters !== undefined) a['voicegate.characters'] = span.characters;
  if (span.audioSeconds !== undefined) a['voicegate.audio_seconds'] = span.audioSeconds;
  if (span.ttfbMs !== undefined) a['voicegate.ttfb_ms'] = span.ttfbMs;
  if (span.firstAudioMs !== undefined) a['voicegate.first_audio_ms'] = span.firstAudioMs;
  if (span.firstTranscriptMs !== undefined) a['voicegate.first_transcript_ms'] = span.firstTranscriptMs;
  if (span.closeCode !== undefined) a['voicegate.websocket.close_code'] = span.closeCode;
  if (span.error) a['error.type'] = span.error;
  if (span.endedBy) a['voicegate.ended_by'] = span.endedBy;
  return a;
}

/** A finished OTel span carrying the usage span's own trace id, span id, start and end. */
export function toReadableSpan(span: UsageSpan): ReadableSpan {
  const startTime = hrTime(span.startTime);
  const endTime = hrTime(span.endTime);
  const durNs = Math.max(0, Math.round(span.durationMs * 1e6));
  const ctx = { traceId: span.traceId, spanId: otelSpanId(span.spanId), traceFlags: TraceFlags.SAMPLED };
  return {
    name: `${span.method} ${span.model || span.path}`,
    kind: SpanKind.SERVER,
    spanContext: () => ctx,
    ...(span.parentSpanId
      ? { parentSpanContext: { traceId: span.traceId, spanId: span.parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: true } }
      : {}),
    startTime,
    endTime,
    status: isErrorSpan(span) ? { code: SpanStatusCode.ERROR, message: span.error || String(span.status) } : { code: SpanStatusCode.UNSET },
    attributes: otelAttributes(span),
    links: [],
    events: [],
    duration: [Math.floor(durNs / 1e9), durNs % 1e9],
    ended: true,
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

/** Exports spans; rejects unless the exporter reported success. */
export function exportSpans(exporter: SpanExporter, spans: readonly UsageSpan[]): Promise<void> {
  return new Promise((resolve, reject) => {
    exporter.export(spans.map(toReadableSpan), (result) => {
      // ExportResultCode.SUCCESS is 0 (@opentelemetry/core).
      if (result.code === 0) resolve();
      else reject(result.error ?? new Error('OTLP export failed'));
    });
  });
}

/** Normalises `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL) to the traces URL. */
export function tracesUrl(endpoint: string): string {
  return /\/v1\/traces\/?$/.test(endpoint) ? endpoint : `${endpoint.replace(/\/+$/, '')}/v1/traces`;
}
