/**
 * The one span builder. The edge observer and the Envoy access-log adapter each reduce what they
 * saw of an exchange to the same {@link ExchangeFacts}; billing, cost, trace context and the
 * snapshot-derived fields are decided here only, so both transports bill alike.
 */
import { modelAccount, type Snapshot } from '../config/snapshot.ts';
import { CATALOGUES, type Meter } from '../catalogue/endpoints.ts';
import type { DecisionMetadata, RouteKind } from '../decision/types.ts';
import { costUsd, findModel, isBillableStatus } from './pricing.ts';
import { isDenialCode } from '../decision/denials.ts';
import { SPAN_SCHEMA, traceContext, type EndedBy, type LimitScopeName, type UsageSpan } from './span.ts';

/** Quantities a transport measured (or estimated) for one exchange. */
export interface Usage {
  readonly characters?: number;
  readonly audioSeconds?: number;
  /** A quantity was not read from the payload itself. */
  readonly estimated: boolean;
}

export interface ExchangeFacts {
  readonly source: 'edge' | 'envoy';
  readonly spanId: string;
  readonly requestId: string;
  readonly startedAtMs: number;
  readonly durationMs: number;
  readonly ttfbMs?: number;
  readonly firstAudioMs?: number;
  readonly firstTranscriptMs?: number;
  readonly method: string;
  /** Public path; only the part before `?` reaches the span. */
  readonly path: string;
  /** HTTP status sent to the client; 101 for WebSocket sessions. */
  readonly status: number;
  readonly closeCode?: number;
  readonly decision: 'allow' | 'deny';
  readonly metadata: DecisionMetadata;
  readonly routeKind: RouteKind | '';
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Ignored for denied exchanges. */
  readonly usage: Usage;
  /** The caller's W3C `traceparent`, when it sent one. */
  readonly traceparent?: string;
  readonly providerRequestId: string;
  /** Short machine reason when the gateway or the proxy ended the exchange; '' otherwise. */
  readonly error: string;
  /** Which side ended the exchange, when the transport knows; otherwise {@link endedByOf} derives it. */
  readonly endedBy?: EndedBy;
  /** Milliseconds spent in a team's bounded wait for a limit; absent when it did not wait. */
  readonly waitedMs?: number;
  /** The limit whose 429 answered the exchange. */
  readonly refusedBy?: { readonly scope: LimitScopeName; readonly limit: string };
  /** The snapshot the exchange was decided with: prices and upstream host come from it. */
  readonly snapshot: Snapshot | undefined;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * How the exchange's endpoint is metered, from the catalogue spec the decision matched; decisions
 * that name no endpoint (remote or scripted authorizers) fall back to the model type.
 */
export function meterOf(md: DecisionMetadata): Meter {
  const spec = md.endpoint ? CATALOGUES.get(md.provider ?? '')?.endpoints.find((e) => e.id === md.endpoint) : undefined;
  if (spec) return spec.meter;
  return md.model_type === 'tts' ? 'tts-characters' : md.model_type === 'stt' ? 'stt-audio' : 'none';
}

/**
 * Characters of a TTS REST/SSE request: those the decision counted in the body it read, else
 * (a body cut at the decision limit, or never sent to Check) the body bytes as an upper bound.
 */
export function bodyCharacters(md: DecisionMetadata, bytesIn: number): Usage {
  return md.characters !== undefined ? { characters: md.characters, estimated: false } : { characters: bytesIn, estimated: true };
}

export function buildSpan(f: ExchangeFacts): UsageSpan {
  const md = f.metadata;
  const provider = md.provider ?? '';
  const model = findModel(f.snapshot, provider, md.model ?? '');
  // The account that served it bills its own price (a transport that names no account: the first's).
  const served = model ? (modelAccount(model, md.account) ?? model.accounts[0]) : undefined;
  const allowed = f.decision === 'allow';
  const usage: Usage = allowed ? f.usage : { estimated: false };
  // One rule for every transport and route kind: an exchange the provider answered with 2xx (or
  // 101) is billed for what the meter counted, however it ended afterwards — cut by the upstream,
  // the client or a gateway timeout mid-body. The provider has started (and charges for) the work;
  // `error` says how it ended. Nothing answered, nothing billed.
  const billable = allowed && isBillableStatus(f.status);
  const tc = traceContext(f.traceparent);
  const upstream = f.snapshot?.providers.get(provider)?.upstream;
  return {
    schema: SPAN_SCHEMA,
    spanId: f.spanId,
    traceId: tc.traceId,
    parentSpanId: tc.parentSpanId,
    source: f.source,
    startTime: new Date(f.startedAtMs).toISOString(),
    endTime: new Date(f.startedAtMs + f.durationMs).toISOString(),
    durationMs: round3(f.durationMs),
    ...(f.ttfbMs !== undefined ? { ttfbMs: round3(f.ttfbMs) } : {}),
    ...(f.firstAudioMs !== undefined ? { firstAudioMs: round3(f.firstAudioMs) } : {}),
    ...(f.firstTranscriptMs !== undefined ? { firstTranscriptMs: round3(f.firstTranscriptMs) } : {}),
    method: f.method,
    path: f.path.split('?')[0] ?? '',
    status: f.status,
    ...(f.closeCode !== undefined ? { closeCode: f.closeCode } : {}),
    decision: f.decision,
    user: md.user ?? '',
    teams: splitTeams(md.teams),
    provider,
    model: md.model ?? '',
    modelType: md.model_type ?? model?.type ?? '',
    account: md.account ?? '',
    routeKind: f.routeKind,
    endpoint: md.endpoint ?? '',
    requestId: f.requestId,
    providerRequestId: f.providerRequestId,
    bytesIn: f.bytesIn,
    bytesOut: f.bytesOut,
    ...(usage.characters !== undefined ? { characters: usage.characters } : {}),
    ...(usage.audioSeconds !== undefined ? { audioSeconds: usage.audioSeconds } : {}),
    estimated: usage.estimated,
    costUsd: billable ? costUsd(served?.price, f.routeKind, usage) : '0',
    configVersion: md.config_version ?? f.snapshot?.version ?? 0,
    error: f.error,
    serverAddress: upstream ? hostOf(upstream) : '',
    endedBy: f.endedBy ?? endedByOf(f.decision, f.error),
    ...(f.waitedMs !== undefined ? { waitedMs: round3(f.waitedMs) } : {}),
    ...(f.refusedBy !== undefined ? { limitScope: f.refusedBy.scope, limitName: f.refusedBy.limit } : {}),
  };
}

/** Ends of a session the edge decided on policy (core/decision/recheck.ts `SessionEndReason`). */
const POLICY_ENDS: ReadonlySet<string> = new Set(['entitlement_revoked', 'account_changed', 'token_expired', 'max_session_duration']);
/** Failures whose side the code alone tells; gateway answers (`DENIALS`) are handled below. */
const SIDE_OF_FAILURE: Readonly<Record<string, EndedBy>> = {
  client_aborted: 'client',
  upstream_reset: 'upstream',
  // The provider refused the connection or the handshake: its side, though the gateway answered 502.
  upstream_unreachable: 'upstream',
  upstream_timeout: 'gateway',
  stream_idle_timeout: 'gateway',
  idle_timeout: 'gateway',
  drain_timeout: 'gateway',
};

/**
 * The side that ended an exchange, from how it ended when the transport did not say: a denial or
 * any answer the gateway wrote itself (limits, no route, 408…) is the gateway's, a re-check's end
 * is policy's. '' for a normal end, or a reason this table does not know (Envoy's free-text
 * termination details), rather than a guess.
 *
 * @example
 * endedByOf('allow', 'client_aborted'); // 'client'
 * endedByOf('allow', 'max_session_duration'); // 'policy'
 */
export function endedByOf(decision: 'allow' | 'deny', error: string): EndedBy {
  if (decision === 'deny') return 'gateway';
  if (error === '') return '';
  if (POLICY_ENDS.has(error)) return 'policy';
  const side = SIDE_OF_FAILURE[error];
  if (side !== undefined) return side;
  return isDenialCode(error) ? 'gateway' : '';
}

/** DecisionMetadata teams ("a,b") as a list. */
export function splitTeams(teams: string | undefined): string[] {
  return (teams ?? '').split(',').map((t) => t.trim()).filter((t) => t !== '');
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}
