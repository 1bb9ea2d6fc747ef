/**
 * Syntheses on one TTS WebSocket, each holding a unit from the client frame that starts it until
 * the provider's `complete` frame, an error frame, or the socket's close.
 *
 * Which client frames start a synthesis follows Lightning's buffering (shared/smallest-api.md):
 * a frame with non-blank `text` starts one, unless it continues a buffer that already holds a unit
 * (`continue: true` frames are buffered until `flush`, so they are one synthesis). Blank text
 * (Pipecat's `{"text":" "}` keepalive, `{"text":"","flush":true}`) takes nothing. A buffer that asked
 * for `max_buffer_flush_ms` may be synthesised by the provider in pieces, so there each text frame
 * takes its own unit: counting too many never lets the provider see more than it sold.
 *
 * The provider sends one `complete` once every queued synthesis of the socket is done (after
 * `complete_backoff_ms` without new chunks), so `complete` returns every unit but the one an open
 * buffer holds; an error frame answers one request and returns one unit.
 */
import type { Admission, Lease, Refusal } from './ledger.ts';
import { limitErrorFrame } from './responses.ts';

export type GateVerdict = { readonly kind: 'forward' } | { readonly kind: 'refuse'; readonly frame: string; readonly refusal: Refusal };

export interface SynthesisGate {
  /**
   * A client frame the model guard let through: forward it, or answer `frame` and drop it.
   * `message`: the frame's JSON object when the caller has parsed it already (the model guard).
   */
  client(data: Uint8Array, isBinary: boolean, message?: Record<string, unknown>): GateVerdict;
  /** A provider frame, relayed to the client. */
  upstream(data: Uint8Array, isBinary: boolean): void;
  /** The session is over: every unit still held is released. Idempotent. */
  end(): void;
  /** Units held now. */
  readonly held: number;
}

const FORWARD: GateVerdict = { kind: 'forward' };
const decoder = new TextDecoder();
// Base64 audio holds no quote, so these tokens appear only as JSON strings of a status frame.
const COMPLETE = Buffer.from('"complete"');
const ERROR = Buffer.from('"error"');

function parseObject(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(decoder.decode(data));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The gate of one socket; `acquire` admits one `tts-synthesis` on the session's chain.
 *
 * @example
 * const gate = synthesisGate(() => ledger.acquire(snapshot, chain, 'tts-synthesis'));
 * gate.client(Buffer.from('{"text":"Hello","voice_id":"magnus"}'), false); // forward, one unit held
 */
export function synthesisGate(acquire: () => Admission): SynthesisGate {
  // Oldest first; `buffer` is the lease of an unflushed `continue` buffer (also in `leases`).
  const leases: Lease[] = [];
  let buffer: Lease | undefined;
  let bufferTimed = false;
  let ended = false;

  const releaseOne = (l: Lease) => {
    l.release();
    const i = leases.indexOf(l);
    if (i !== -1) leases.splice(i, 1);
    if (buffer === l) buffer = undefined;
  };

  return {
    get held() {
      return leases.length;
    },
    client(data, isBinary, message) {
      if (ended || isBinary) return FORWARD;
      const msg = message ?? parseObject(data);
      // The model guard has refused anything unreadable already; nothing here to synthesise.
      if (!msg) return FORWARD;
      const hasText = typeof msg.text === 'string' && msg.text.trim() !== '';
      const cont = msg.continue === true && msg.flush !== true;
      const timed = typeof msg.max_buffer_flush_ms === 'number';
      if (hasText && (!buffer || bufferTimed || timed)) {
        const a = acquire();
        if (a.kind === 'refused') {
          return { kind: 'refuse', frame: limitErrorFrame(a, typeof msg.request_id === 'string' ? msg.request_id : undefined), refusal: a };
        }
        leases.push(a.lease);
        if (cont) {
          buffer = a.lease;
          bufferTimed = timed;
        }
      }
      // A flush, or text without `continue`, hands the buffer to the provider: its unit now belongs
      // to a running synthesis and is returned by `complete`.
      if (!cont && (hasText || msg.flush === true)) {
        buffer = undefined;
        bufferTimed = false;
      }
      return FORWARD;
    },
    upstream(data, isBinary) {
      if (ended || isBinary || leases.length === 0) return;
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const complete = bytes.includes(COMPLETE);
      if (!complete && !bytes.includes(ERROR)) return;
      const status = parseObject(data)?.status;
      if (status === 'complete') {
        for (const l of [...leases]) if (l !== buffer) releaseOne(l);
      } else if (status === 'error') {
        const oldest = leases.find((l) => l !== buffer) ?? leases[0];
        if (oldest) releaseOne(oldest);
      }
    },
    end() {
      if (ended) return;
      ended = true;
      for (const l of leases) l.release();
      leases.length = 0;
      buffer = undefined;
    },
  };
}
