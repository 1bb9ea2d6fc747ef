/**
 * What an exchange takes from the limits, in the provider's concurrency units (shared/smallest-api.md):
 * one unit is one TTS synthesis in flight (REST, SSE or one request on a WebSocket), each unit
 * allows `ws_per_unit` TTS WebSockets, and for STT one unit is one streaming WebSocket.
 *
 * The kind is read from the decision's metadata alone (its endpoint spec, else route kind and model
 * type), so an allow from a remote authorizer is classified the same way as one made in process.
 */
import { CATALOGUES } from '../catalogue/endpoints.ts';
import type { DecisionMetadata } from '../decision/types.ts';

/**
 * - `tts-request`: a TTS REST or SSE request — one account TTS unit, one user/team unit.
 * - `stt-request`: an STT REST request — one user/team unit; the provider counts no unit for it.
 * - `tts-session`: a TTS WebSocket — one account connection slot, one user/team session.
 * - `tts-synthesis`: one synthesis on an open TTS WebSocket — one account TTS unit, one user/team unit.
 * - `stt-session`: an STT WebSocket — one account STT unit, one user/team unit and session.
 * - `other`: voices, clone management — nothing concurrent; counts toward requests per minute.
 */
export type AdmissionKind = 'tts-request' | 'stt-request' | 'tts-session' | 'tts-synthesis' | 'stt-session' | 'other';

export const ADMISSION_KINDS: readonly AdmissionKind[] = ['tts-request', 'stt-request', 'tts-session', 'tts-synthesis', 'stt-session', 'other'];

/** What one admission of a kind takes at each level of the chain. */
export interface KindCost {
  /** User/team `max_units`. */
  readonly units: boolean;
  /** User/team `max_sessions`. */
  readonly sessions: boolean;
  /** The account's pool it draws from, if any. */
  readonly account?: AccountPool;
}

/**
 * The account's pools. TTS syntheses and STT sockets are separate pools of `concurrency` units
 * each, as the provider (and the simulator) count them per key; TTS sockets have their own slots.
 */
export type AccountPool = 'tts_units' | 'stt_units' | 'ws_slots';

export const KIND_COST: Readonly<Record<AdmissionKind, KindCost>> = {
  'tts-request': { units: true, sessions: false, account: 'tts_units' },
  'stt-request': { units: true, sessions: false },
  'tts-session': { units: false, sessions: true, account: 'ws_slots' },
  'tts-synthesis': { units: true, sessions: false, account: 'tts_units' },
  'stt-session': { units: true, sessions: true, account: 'stt_units' },
  other: { units: false, sessions: false },
};

/**
 * The kind of the exchange an allow admits (the upgrade itself for WebSockets; syntheses on a TTS
 * socket are admitted one by one as `tts-synthesis`).
 *
 * @example
 * admissionKind({ provider: 'smallest', endpoint: 'tts.sse' }); // 'tts-request'
 * admissionKind({ route_kind: 'websocket', model_type: 'stt' }); // 'stt-session'
 */
export function admissionKind(md: DecisionMetadata): AdmissionKind {
  const spec = md.endpoint ? CATALOGUES.get(md.provider ?? '')?.endpoints.find((e) => e.id === md.endpoint) : undefined;
  const kind = spec?.kind ?? md.route_kind;
  const type = spec ? spec.type : md.model_type;
  // Without a spec, a metered endpoint cannot be told from voices; count it as the metered one
  // (the stricter reading).
  const metered = spec ? spec.meter !== 'none' : true;
  if (kind === 'websocket') return type === 'stt' ? 'stt-session' : 'tts-session';
  if (!metered || type === undefined) return 'other';
  return type === 'stt' ? 'stt-request' : 'tts-request';
}

/** The caller's chain as the decision named it: user, teams (metadata joins them with commas), account. */
export interface Chain {
  readonly user?: string;
  readonly teams: readonly string[];
  readonly account?: string;
}

export function chainOf(md: DecisionMetadata): Chain {
  // Runs on every admission: plain stores instead of conditional spreads (same keys, same order).
  const teams = md.teams ? md.teams.split(',').filter((t) => t.length > 0) : [];
  const chain: { user?: string; teams: readonly string[]; account?: string } = md.user ? { user: md.user, teams } : { teams };
  if (md.account) chain.account = md.account;
  return chain;
}
