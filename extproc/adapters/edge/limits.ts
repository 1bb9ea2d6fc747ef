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
import { waitable, waitingTeam, WaitQueue, type WaitTicket } from '../../core/limits/waiters.ts';

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

/** {@link admitLimitsWaiting}'s answer: as {@link admitLimits}, with how long a bounded wait took. */
export type WaitedAdmission = LimitAdmission & { readonly waitedMs?: number };

/**
 * Takes the exchange's admission. A lease that is granted is released by the returned observer's
 * `end` (and only there); nothing is held when refused.
 */
export function admitLimits(ledger: AdmissionLedger, decision: Allow, snapshot: Snapshot, observer: GuardedObserver): LimitAdmission {
  // Waiters first: an arrival must not take a unit (a grant refilled, a snapshot's larger cap) the
  // queue could have been given. One map lookup when nothing waits.
  const waits = edgeWaits.get(ledger);
  if (waits && waits.queue.size > 0) waits.queue.pump();
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

/** How often waiters look for a departed client, a lapsed deadline, or units freed without a release here (a refilled grant). */
const WAIT_POLL_MS = 20;

interface EdgeWaits {
  readonly queue: WaitQueue<Extract<LimitAdmission, { kind: 'admitted' }>>;
  readonly watched: Map<WaitTicket, () => boolean>;
  timer?: NodeJS.Timeout;
}

/** The bounded waits of each ledger the edge admits with (one per process, usually). */
const edgeWaits = new WeakMap<AdmissionLedger, EdgeWaits>();

function waitsOf(ledger: AdmissionLedger): EdgeWaits {
  let w = edgeWaits.get(ledger);
  if (w) return w;
  const waits: EdgeWaits = { queue: new WaitQueue(), watched: new Map() };
  // Every release (an exchange's end, a synthesis on a socket, an Envoy slot) serves waiters at
  // once; never into the releasing caller's path if a waiter's admission throws.
  ledger.onRelease?.(() => {
    if (waits.queue.size === 0) return;
    try {
      waits.queue.pump();
    } catch {
      // A failed attempt leaves its waiter queued; the poll tries again.
    }
  });
  edgeWaits.set(ledger, (w = waits));
  return w;
}

function watch(waits: EdgeWaits, ticket: WaitTicket, gone: () => boolean): void {
  waits.watched.set(ticket, gone);
  if (waits.timer) return;
  waits.timer = setInterval(() => {
    for (const [t, left] of waits.watched) if (left()) waits.queue.cancel(t);
    waits.queue.expire();
    waits.queue.pump();
    if (waits.queue.size === 0) {
      clearInterval(waits.timer);
      waits.timer = undefined;
    }
  }, WAIT_POLL_MS);
  // Waiters never keep a closing process alive: each ends by its own deadline (at most 30 s).
  waits.timer.unref();
}

/**
 * {@link admitLimits}, with the bounded wait of the chain's team (core/limits/waiters.ts): when
 * refused for concurrency and one of the chain's teams configures `wait`, the exchange queues under
 * that team — fairly across teams — and resolves admitted once units free, or refused (the refusal
 * last seen) after `max_ms`, or at once when the team's queue is full. `gone`: the client left;
 * its waiter leaves the queue holding nothing (resolved refused; the caller ends the exchange as
 * aborted). Syntheses on an open TTS socket never wait (their gate admits directly).
 */
export async function admitLimitsWaiting(
  ledger: AdmissionLedger,
  decision: Allow,
  snapshot: Snapshot,
  observer: GuardedObserver,
  gone: () => boolean,
): Promise<WaitedAdmission> {
  const wait = waitingTeam(snapshot, chainOf(decision.metadata));
  if (!wait) return admitLimits(ledger, decision, snapshot, observer);
  // Retries are not refusals a client saw: count only the 429 that is sent (limit-metrics.ts).
  const quiet = ledger.uncounted?.() ?? ledger;
  const refused = (r: Extract<LimitAdmission, { kind: 'refused' }>, waitedMs?: number): WaitedAdmission => {
    ledger.refused?.(r.refusal);
    return waitedMs !== undefined ? { ...r, waitedMs } : r;
  };
  const first = admitLimits(quiet, decision, snapshot, observer);
  if (first.kind === 'admitted') return first;
  if (!waitable(first.refusal)) return refused(first);
  const waits = waitsOf(ledger);
  return new Promise<WaitedAdmission>((resolve) => {
    let last = first;
    const ticket = waits.queue.enqueue(
      wait.team,
      wait.policy,
      () => {
        const a = admitLimits(quiet, decision, snapshot, observer);
        if (a.kind === 'admitted') return a;
        last = a;
        return undefined;
      },
      (end) => {
        if (ticket) waits.watched.delete(ticket);
        ledger.waited?.(end.outcome, end.waitedMs);
        if (end.outcome !== 'admitted') return resolve(refused(last, end.waitedMs));
        // The span records the wait of an exchange that was served after it.
        resolve({ ...end.value, observer: endingWith(end.value.observer, { waitedMs: end.waitedMs }), waitedMs: end.waitedMs });
      },
    );
    // The team's queue is full: the 429 now, as without a wait.
    if (!ticket) return resolve(refused(first));
    watch(waits, ticket, gone);
  });
}

/** `observer` whose `end` goes through `end` instead; every other call passes straight on. */
function withEnd(observer: GuardedObserver, end: GuardedObserver['end']): GuardedObserver {
  return {
    get ended() {
      return observer.ended;
    },
    requestChunk: (c) => observer.requestChunk(c),
    responseStart: (s, h) => observer.responseStart(s, h),
    responseChunk: (c) => observer.responseChunk(c),
    clientMessage: (d, b) => observer.clientMessage(d, b),
    upstreamMessage: (d, b) => observer.upstreamMessage(d, b),
    end,
  };
}

/** `observer` with `extra` added to its end. */
function endingWith(observer: GuardedObserver, extra: { readonly waitedMs: number }): GuardedObserver {
  return withEnd(observer, (outcome) => observer.end({ ...outcome, ...extra }));
}

// Shared with Envoy's Check (adapters/envoy/check-admission.ts); re-exported for existing callers.
export { bindAccount, candidatesOf };

/** `observer`, with `release` run once when the exchange ends (even if the observer throws) and the served account added. */
function releasingOnEnd(observer: GuardedObserver, account: () => string | undefined, release: () => void): GuardedObserver {
  let released = false;
  return withEnd(observer, (outcome) => {
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
  });
}
