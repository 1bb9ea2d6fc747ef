/**
 * Limits under Envoy. `Check` takes the units of an allowed REST/SSE request or STT WebSocket
 * upgrade — the same all-or-nothing ledger call the embedded edge makes (core/limits/admission.ts)
 * — and hands Envoy the slot id in the ext_authz dynamic metadata, which Envoy forwards to ext_proc
 * (`metadata_options.forwarding_namespaces`) and writes into the access-log entry. The release is
 * the first of: the ext_proc stream of that request ending, its access-log entry, or the sweeper
 * for a slot no stream claimed in time (core/limits/slots.ts). Over a limit, Check denies with the
 * edge's 429 (`Retry-After`, the JSON body naming the limit).
 *
 * TTS WebSockets are not admitted here: envoy.yaml routes them to the voicegate edge (frames carry
 * the syntheses), which admits them itself — as it does everything it asks Check about, saying so
 * in the call's gRPC metadata ({@link SELF_ADMISSION_HEADER}).
 */
import { authzUnavailable } from '../../core/decision/decide.ts';
import type { Decision } from '../../core/decision/types.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import { admitDecision, limitDenial } from '../../core/limits/admission.ts';
import { admissionKind } from '../../core/limits/kinds.ts';
import type { AdmissionLedger } from '../../core/limits/ledger.ts';
import { SlotTable } from '../../core/limits/slots.ts';
import { EXT_AUTHZ_NAMESPACE } from './access-log-span.ts';
import { LIMIT_SLOT_KEY, type CheckExtras } from './check-response.ts';
import { fromStruct, type ProtoStruct } from './struct.ts';

/**
 * gRPC metadata the edge's Check client sends: "I take the units myself". Only authenticated peers
 * reach these services (mutual TLS or a Unix socket), and Envoy sends no caller headers as gRPC
 * metadata, so a client of the public listener cannot set it.
 */
export const SELF_ADMISSION_HEADER = 'x-voicegate-admission';
export const SELF_ADMISSION_VALUE = 'self';

export interface EnvoyLimits {
  readonly ledger: AdmissionLedger;
  readonly slots: SlotTable;
}

/** A decision and what Check adds to its response. */
export interface CheckAnswer {
  readonly decision: Decision;
  readonly extra?: CheckExtras;
}

/**
 * Admits an allowed Check against the limits. `snapshot` is the one the decision used; without one
 * nothing can be admitted (fail closed).
 */
export function admitCheck(limits: EnvoyLimits, decision: Decision, snapshot: Snapshot | undefined): CheckAnswer {
  if (decision.kind !== 'allow') return { decision };
  // Envoy sends TTS WebSockets to the edge without Check; if one reaches Check all the same, the
  // edge behind it admits the socket and its syntheses, so nothing is taken here.
  if (admissionKind(decision.metadata) === 'tts-session') return { decision };
  if (!snapshot) return { decision: authzUnavailable() };
  const a = admitDecision(limits.ledger, decision, snapshot);
  if (a.kind === 'refused') {
    const d = limitDenial(a.refusal, decision.metadata);
    return { decision: d.deny, extra: { deniedBody: d.body } };
  }
  return { decision: a.decision, extra: { slot: limits.slots.hold(a.lease) } };
}

/** The slot id in an Envoy `Metadata` message (ext_proc's `metadata_context`, an access-log entry's metadata). */
export function limitSlotFrom(metadata: unknown): string | undefined {
  const ns = (metadata as { filter_metadata?: Record<string, unknown> } | null | undefined)?.filter_metadata?.[EXT_AUTHZ_NAMESPACE];
  if (!ns || typeof ns !== 'object') return undefined;
  const v = fromStruct(ns as ProtoStruct)[LIMIT_SLOT_KEY];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Sweeps unclaimed slots every `intervalMs` (a fifth of the claim timeout, 50 ms to 1 s by default). Returns the stop. */
export function startSlotSweeper(slots: SlotTable, intervalMs = Math.max(50, Math.min(1_000, slots.claimTimeoutMs / 5))): () => void {
  const timer = setInterval(() => slots.sweep(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
