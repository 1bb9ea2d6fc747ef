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
import { bindAccount, candidatesOf } from '../../core/limits/admission.ts';

export type LimitAdmission =
  | {
      readonly kind: 'admitted';
      /** The exchange's observer, releasing everything the exchange holds when it ends. */
      readonly observer: GuardedObserver;
      /** TTS WebSockets: admits each synthesis on the socket. */
      readonly frameGate?: SynthesisGate;
      /**
       * The decision bound to the account admitted on: the same allow when that is the decision's
       * `account`, else one carrying the chosen account's key and name.
       */
      readonly decision: Allow;
      /**
       * REST and SSE on a model with several usable accounts: after a provider 429, cools the account
       * and admits once on another; returns the allow bound to it (the first unit released), or
       * undefined when no other account has room (the 429 then reaches the client as sent).
       */
      readonly reroute?: () => Allow | undefined;
    }
  | { readonly kind: 'refused'; readonly response: LocalResponse; readonly code: LimitCode; readonly refusal: Refusal };

/**
 * Takes the exchange's admission. A lease that is granted is released by the returned observer's
 * `end` (and only there); nothing is held when refused.
 */
export function admitLimits(ledger: AdmissionLedger, decision: Allow, snapshot: Snapshot, observer: GuardedObserver): LimitAdmission {
  const kind = admissionKind(decision.metadata);
  const chain = chainOf(decision.metadata);
  const candidates = candidatesOf(decision.metadata);
  const admission = candidates.length > 1 ? ledger.acquireAny(snapshot, chain, candidates, kind) : ledger.acquire(snapshot, chain, kind);
  if (admission.kind === 'refused') {
    return { kind: 'refused', response: limitResponse(admission), code: LIMIT_CODES[admission.scope], refusal: admission };
  }
  let lease = admission.lease;
  let bound = bindAccount(decision, snapshot, lease.account);
  // The session's snapshot decides its syntheses too: an exchange keeps the snapshot it started
  // with, and its syntheses run on the key of the account the socket was opened with.
  const gate =
    kind === 'tts-session'
      ? synthesisGate(() => ledger.acquire(snapshot, { ...chain, ...(lease.account !== undefined ? { account: lease.account } : {}) }, 'tts-synthesis'))
      : undefined;
  let rerouted = false;
  const reroute = (): Allow | undefined => {
    if (rerouted || lease.released) return undefined;
    rerouted = true;
    const from = lease.account;
    if (from !== undefined) ledger.cool(from);
    const others = candidates.filter((c) => c !== from);
    if (others.length === 0) return undefined;
    const next = ledger.acquireAny(snapshot, chain, others, kind);
    if (next.kind !== 'granted') return undefined;
    // The unit of the account that refused is given back now, exactly once (release is idempotent
    // and the observer's end releases the lease in force, which is the new one from here on).
    lease.release();
    lease = next.lease;
    bound = bindAccount(decision, snapshot, lease.account);
    return bound;
  };
  const request = kind === 'tts-request' || kind === 'stt-request' || kind === 'other';
  return {
    kind: 'admitted',
    observer: releasingOnEnd(
      observer,
      () => (bound.metadata.account !== decision.metadata.account ? bound.metadata.account : undefined),
      () => {
        gate?.end();
        lease.release();
      },
    ),
    decision: bound,
    ...(gate ? { frameGate: gate } : {}),
    ...(request && candidates.length > 1 ? { reroute } : {}),
  };
}

// Shared with Envoy's Check (adapters/envoy/check-admission.ts); re-exported for existing callers.
export { bindAccount, candidatesOf };

/** `observer`, with `release` run once when the exchange ends (even if the observer throws) and the served account added. */
function releasingOnEnd(observer: GuardedObserver, account: () => string | undefined, release: () => void): GuardedObserver {
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
        // The span names the account that served the exchange, where admission or a retry moved it.
        const served = account();
        observer.end(served !== undefined ? { ...outcome, account: served } : outcome);
      } finally {
        if (!released) {
          released = true;
          release();
        }
      }
    },
  };
}
