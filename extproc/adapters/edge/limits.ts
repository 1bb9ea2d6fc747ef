/**
 * Admission against the limits (core/limits) for the embedded edge: after the decision allowed
 * and the upstream is planned, the exchange takes what its kind costs on its chain (user, teams,
 * account) or is answered 429 before a byte reaches the provider.
 *
 * Every release is tied to the exchange observer's `end`, which the edge calls exactly once on
 * whichever comes first — the response's end, an upstream error, a client abort, a timeout, the
 * edge's shutdown — so no transport path needs its own release. TTS WebSockets also get a
 * {@link SynthesisGate} that holds one unit per synthesis on the socket.
 */
import type { Snapshot } from '../../core/config/snapshot.ts';
import type { Allow } from '../../core/decision/types.ts';
import type { LocalResponse } from '../../core/exchange/responses.ts';
import type { GuardedObserver } from '../../core/exchange/safe-observer.ts';
import { admissionKind, chainOf } from '../../core/limits/kinds.ts';
import type { AdmissionLedger, Refusal } from '../../core/limits/ledger.ts';
import { LIMIT_CODES, limitResponse, type LimitCode } from '../../core/limits/responses.ts';
import { synthesisGate, type SynthesisGate } from '../../core/limits/synthesis.ts';

export type LimitAdmission =
  | {
      readonly kind: 'admitted';
      /** The exchange's observer, releasing everything the exchange holds when it ends. */
      readonly observer: GuardedObserver;
      /** TTS WebSockets: admits each synthesis on the socket. */
      readonly frameGate?: SynthesisGate;
    }
  | { readonly kind: 'refused'; readonly response: LocalResponse; readonly code: LimitCode; readonly refusal: Refusal };

/**
 * Takes the exchange's admission. A lease that is granted is released by the returned observer's
 * `end` (and only there); nothing is held when refused.
 */
export function admitLimits(ledger: AdmissionLedger, decision: Allow, snapshot: Snapshot, observer: GuardedObserver): LimitAdmission {
  const kind = admissionKind(decision.metadata);
  const chain = chainOf(decision.metadata);
  const admission = ledger.acquire(snapshot, chain, kind);
  if (admission.kind === 'refused') {
    return { kind: 'refused', response: limitResponse(admission), code: LIMIT_CODES[admission.scope], refusal: admission };
  }
  const lease = admission.lease;
  // The session's snapshot decides its syntheses too: an exchange keeps the snapshot it started with.
  const gate = kind === 'tts-session' ? synthesisGate(() => ledger.acquire(snapshot, chain, 'tts-synthesis')) : undefined;
  return {
    kind: 'admitted',
    observer: releasingOnEnd(observer, () => {
      gate?.end();
      lease.release();
    }),
    ...(gate ? { frameGate: gate } : {}),
  };
}

/** `observer`, with `release` run once when the exchange ends, even if the observer throws. */
function releasingOnEnd(observer: GuardedObserver, release: () => void): GuardedObserver {
  let released = false;
  return {
    get ended() {
      return observer.ended;
    },
    requestChunk: (c) => observer.requestChunk(c),
    responseStart: (s, h) => observer.responseStart(s, h),
    responseChunk: (c) => observer.responseChunk(c),
    clientMessage: (d, b) => observer.clientMessage(d, b),
    upstreamMessage: (d, b) => observer.upstreamMessage(d, b),
    end: (outcome) => {
      try {
        observer.end(outcome);
      } finally {
        if (!released) {
          released = true;
          release();
        }
      }
    },
  };
}
