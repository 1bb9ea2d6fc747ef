/**
 * The usage span as it travels on NATS: the proto3 JSON encoding of
 * `voicegate.usage.v1.UsageSpan` (protos/span.proto). Field names are the proto JSON names.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';

export const SPAN_SCHEMA = 'voicegate.usage.v1';

/** Values of the span's `endedBy`, '' when the side is not known. */
export const END_SIDES = ['client', 'upstream', 'gateway', 'policy', ''] as const;
export type EndedBy = (typeof END_SIDES)[number];

/** Scopes of the limit that refused an exchange (the span's `limitScope`). */
export const LIMIT_SCOPES = ['user', 'team', 'account'] as const;
export type LimitScopeName = (typeof LIMIT_SCOPES)[number];

const u64 = z.union([z.number(), z.string().regex(/^\d+$/)]).transform(Number).pipe(z.number().int().nonnegative());
const ms = z.number().nonnegative();
const hex = (len: number) => z.string().regex(new RegExp(`^[0-9a-f]{${len}}$`));

/** proto3's default string (a writer that emits defaults) means the field is not set. */
const absentWhenEmpty = (v: unknown): unknown => (v === '' ? undefined : v);

/** Zod schema decoding a span from its JSON wire form; proto3 omitted defaults are filled in. */
export const usageSpanSchema = z.object({
  schema: z.literal(SPAN_SCHEMA),
  spanId: hex(32),
  traceId: hex(32),
  parentSpanId: z.union([hex(16), z.literal('')]).default(''),
  source: z.enum(['edge', 'envoy']),
  startTime: z.iso.datetime({ offset: true }),
  endTime: z.iso.datetime({ offset: true }),
  durationMs: ms.default(0),
  ttfbMs: ms.optional(),
  firstAudioMs: ms.optional(),
  firstTranscriptMs: ms.optional(),
  method: z.string().default(''),
  path: z.string().default(''),
  status: z.number().int().nonnegative().default(0),
  closeCode: z.number().int().nonnegative().optional(),
  decision: z.enum(['allow', 'deny']).default('allow'),
  user: z.string().default(''),
  teams: z.array(z.string()).default([]),
  provider: z.string().default(''),
  model: z.string().default(''),
  modelType: z.enum(['tts', 'stt', '']).default(''),
  account: z.string().default(''),
  routeKind: z.enum(['rest', 'sse', 'websocket', '']).default(''),
  endpoint: z.string().default(''),
  requestId: z.string().default(''),
  providerRequestId: z.string().default(''),
  bytesIn: u64.default(0),
  bytesOut: u64.default(0),
  characters: u64.optional(),
  audioSeconds: z.number().nonnegative().optional(),
  estimated: z.boolean().default(false),
  costUsd: z.string().regex(/^\d+(\.\d+)?$/).default('0'),
  configVersion: u64.default(0),
  error: z.string().default(''),
  serverAddress: z.string().default(''),
  /** Which side ended the exchange (protos/span.proto `ended_by`); absent in older spans. */
  endedBy: z.enum(END_SIDES).default(''),
  /** Milliseconds spent in a team's bounded wait for a limit (protos/span.proto `waited_ms`); absent when it did not wait. */
  waitedMs: ms.optional(),
  /**
   * Scope of the limit whose 429 answered the exchange (`limit_scope`); absent when no limit
   * refused it (proto3 JSON omits the empty string, which decodes as absent too).
   */
  limitScope: z.preprocess(absentWhenEmpty, z.enum(LIMIT_SCOPES).optional()),
  /** That limit's name: `max_units`, `max_sessions`, `requests_per_minute`, `concurrency`, `ws_connections`. */
  limitName: z.preprocess(absentWhenEmpty, z.string().optional()),
});

/** One usage span (decoded; every field present except the optional measurements). */
export type UsageSpan = z.output<typeof usageSpanSchema>;

/** Thrown when bytes from NATS are not a valid span. */
export class SpanDecodeError extends Error {
  override readonly name = 'SpanDecodeError';
}

/** Encodes a span as its JSON wire form (UTF-8 bytes). */
export function encodeSpan(span: UsageSpan): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(span));
}

/** Decodes and validates a span from JSON bytes or text. */
export function decodeSpan(data: Uint8Array | string): UsageSpan {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
  } catch (cause) {
    throw new SpanDecodeError('span is not JSON', { cause });
  }
  const r = usageSpanSchema.safeParse(raw);
  if (!r.success) throw new SpanDecodeError(`invalid span: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** A new span id: 16 random bytes as 32 lower-case hex characters. */
export function newSpanId(): string {
  return randomBytes(16).toString('hex');
}

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Trace context for a new span: continues a valid W3C `traceparent` (Trace Context §3.2: version
 * `ff` and all-zero ids are invalid; future versions may append fields), otherwise starts a trace.
 */
export function traceContext(traceparent: string | undefined): { traceId: string; parentSpanId: string } {
  const m = traceparent ? TRACEPARENT_RE.exec(traceparent.trim().toLowerCase()) : null;
  if (m) {
    const [, version, traceId, parent, , rest] = m;
    const valid = version !== 'ff' && !(version === '00' && rest) && !/^0+$/.test(traceId!) && !/^0+$/.test(parent!);
    if (valid) return { traceId: traceId!, parentSpanId: parent! };
  }
  return { traceId: randomBytes(16).toString('hex'), parentSpanId: '' };
}

/** The OTel/W3C span id (8 bytes) derived from a span id: its first 16 hex characters. */
export function otelSpanId(spanId: string): string {
  return spanId.slice(0, 16);
}

/**
 * Whether a span counts as an error in roll-ups: denied, HTTP status ≥ 400, ended by the gateway,
 * or a WebSocket closed with a code other than 1000 (normal) / 1001 (going away) / 1005 (none).
 */
export function isErrorSpan(span: UsageSpan): boolean {
  if (span.decision === 'deny' || span.status >= 400 || span.error !== '') return true;
  return span.closeCode !== undefined && ![1000, 1001, 1005].includes(span.closeCode);
}

/** NATS subject token: only `[A-Za-z0-9_-]`, everything else becomes `_` (`lightning-v3.1` → `lightning-v3_1`). */
export function subjectToken(value: string): string {
  const t = value.replace(/[^A-Za-z0-9_-]/g, '_');
  return t === '' ? '_' : t;
}
