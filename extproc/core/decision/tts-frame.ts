/**
 * Frame-level model check of a TTS WebSocket session. The upgrade is decided once, for one model
 * (the path's, the query's or the default), but Lightning reads a `model` from every client frame
 * (Pipecat and the Python SDK send one) and serves that model. So each client frame is read before
 * it is forwarded, and only frames the provider would serve on the session's own model pass.
 *
 * The rule is the narrow one: a frame may name the session's model or one of its aliases, or name
 * no model. Another model is refused even when the caller is entitled to it on the same account:
 * the session was decided, admitted and is metered for one model, and a caller who wants another
 * opens a session for it. Anything whose `model` cannot be read the way every parser reads it is
 * refused too, since the provider might read a model out of it: binary frames (Lightning takes JSON
 * text frames only), text that is not UTF-8 or not a JSON object, a key given twice, a `model`
 * that is not a string, or a key spelled like `model` in another case.
 */
import type { Snapshot } from '../config/snapshot.ts';
import { CATALOGUES } from '../catalogue/endpoints.ts';
import { firstDuplicateTopLevelKey } from './tts-body.ts';
import type { DecisionMetadata } from './types.ts';

/** Why a frame was refused (logs and metrics; the client reads the message). */
export type FrameRefusal = 'model_conflict' | 'binary_frame' | 'invalid_frame' | 'ambiguous_parameter';

export type FrameVerdict =
  /** Forward the frame; what it synthesises is metered at `model` (the session's canonical name). */
  | { readonly kind: 'forward'; readonly model: string }
  | { readonly kind: 'refuse'; readonly reason: FrameRefusal; readonly message: string };

/** The check of one session, built once at the upgrade and applied to every client frame. */
export interface TtsFrameGuard {
  /** The model the session was decided for (canonical name). */
  readonly model: string;
  check(data: Uint8Array, isBinary: boolean): FrameVerdict;
  /**
   * {@link check}, with the frame's parsed JSON object when it is forwarded, so that the next
   * reader of the same frame (the synthesis gate) need not decode and parse it again.
   */
  inspect(data: Uint8Array, isBinary: boolean): { readonly verdict: FrameVerdict; readonly message?: Record<string, unknown> };
}

// Fatal: bytes that are not UTF-8 could be decoded into another model name by the provider.
const decoder = new TextDecoder('utf-8', { fatal: true });

const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

/**
 * Whether the decision is for a TTS WebSocket session: by the endpoint spec it matched, or, from
 * an authorizer that names no endpoint, by the model's type (the proxy only sees upgrades).
 */
export function isTtsWebSocketSession(md: DecisionMetadata): boolean {
  const spec = md.endpoint ? CATALOGUES.get(md.provider ?? '')?.endpoints.find((e) => e.id === md.endpoint) : undefined;
  if (spec) return spec.kind === 'websocket' && spec.type === 'tts';
  return md.model_type === 'tts';
}

/**
 * The guard of a session allowed with `md`, or undefined when the session is not a TTS WebSocket
 * (STT sockets carry audio frames and no model).
 *
 * @example
 * const guard = ttsFrameGuard({ provider: 'smallest', model: 'lightning-v3.1', endpoint: 'tts.ws' }, snapshot);
 * guard?.check(Buffer.from('{"text":"hi","model":"lightning_v3.1"}'), false); // { kind: 'forward', model: 'lightning-v3.1' }
 */
export function ttsFrameGuard(md: DecisionMetadata, snapshot: Snapshot | undefined): TtsFrameGuard | undefined {
  if (!isTtsWebSocketSession(md)) return undefined;
  const model = md.model ?? '';
  // Every spelling the snapshot resolves to the session's model: its name and its aliases.
  const names = new Set<string>(model === '' ? [] : [model]);
  for (const [name, config] of snapshot?.models.get(md.provider ?? '') ?? []) {
    if (config.name === model) names.add(name);
  }
  const forward: FrameVerdict = { kind: 'forward', model };
  const inspect = (data: Uint8Array, isBinary: boolean): { verdict: FrameVerdict; message?: Record<string, unknown> } => {
    if (isBinary) return { verdict: refuse('binary_frame', 'TTS WebSocket messages must be JSON text frames') };
    let source: string;
    let parsed: unknown;
    try {
      source = decoder.decode(data);
      parsed = JSON.parse(source);
    } catch {
      return { verdict: refuse('invalid_frame', 'the message is not a UTF-8 JSON object, so its "model" cannot be checked') };
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return { verdict: refuse('invalid_frame', 'the message is not a JSON object, so its "model" cannot be checked') };
    }
    // JSON.parse keeps the last of two equal keys, other parsers the first: the provider could
    // read another `model` (or another `text` than the one metered).
    const duplicate = firstDuplicateTopLevelKey(source);
    if (duplicate !== undefined) return { verdict: refuse('ambiguous_parameter', `the message names key "${clip(duplicate)}" more than once`) };
    for (const key of Object.keys(parsed)) {
      if (key !== 'model' && key.toLowerCase() === 'model') {
        return { verdict: refuse('ambiguous_parameter', `the message names "${clip(key)}"; write the key as "model"`) };
      }
    }
    const message = parsed as Record<string, unknown>;
    if (!Object.hasOwn(parsed, 'model')) return { verdict: forward, message };
    const named = message.model;
    if (typeof named !== 'string') return { verdict: refuse('invalid_frame', 'the message\'s "model" must be a string') };
    if (names.has(named)) return { verdict: forward, message };
    return {
      verdict: refuse(
        'model_conflict',
        `the message names model "${clip(named)}" but this session was opened for "${clip(model)}"; open a session for that model or leave "model" out`,
      ),
    };
  };
  return {
    model,
    inspect,
    check: (data, isBinary) => inspect(data, isBinary).verdict,
  };
}

function refuse(reason: FrameRefusal, message: string): FrameVerdict {
  return { kind: 'refuse', reason, message };
}

/**
 * The frame the client receives before the socket closes with 1008: the provider's own error
 * frame shape, `message` and `error` both set because real clients read one or the other.
 */
export function ttsErrorFrame(message: string): string {
  return JSON.stringify({ status: 'error', message, error: message });
}

/** WebSocket close code of a refused frame (RFC 6455 §7.4.1, policy violation). */
export const FRAME_REFUSED_CLOSE_CODE = 1008;
