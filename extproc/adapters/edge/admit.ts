/**
 * What every proxied exchange goes through before any byte reaches the provider, in Envoy's filter
 * order: ext_authz decides, ext_proc (the observer) opens, then a denial, a route no provider
 * serves, or a missing snapshot is answered locally. REST and WebSocket upgrades differ only in how
 * they write that local answer, so they hand it in. Decision, plan and observer all read the
 * snapshot the exchange captured at arrival.
 */
import type { Logger } from 'pino';
import { authzUnavailable } from '../../core/decision/decide.ts';
import { statusOf } from '../../core/decision/denials.ts';
import type { Allow, Authorizer } from '../../core/decision/types.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import type { BodyPrefix } from './body-prefix.ts';
import { buildCheckInput } from '../../core/exchange/check-input.ts';
import { askAuthorizer, type Exchange } from '../../core/exchange/exchange.ts';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import { denyResponse, gatewayError, type LocalResponse } from '../../core/exchange/responses.ts';
import { openObserver, type GuardedObserver } from '../../core/exchange/safe-observer.ts';
import { planUpstream, type UpstreamPlan } from '../../core/exchange/upstream-plan.ts';
import type { AdmissionLedger } from '../../core/limits/ledger.ts';
import type { SynthesisGate } from '../../core/limits/synthesis.ts';
import { admitLimitsWaiting } from './limits.ts';

export interface AdmitDeps {
  readonly authorizer: Authorizer;
  readonly observe?: ExchangeObserverFactory;
  readonly logger: Logger;
  /** The pod's admission ledger (core/limits); every allowed exchange takes its units here. */
  readonly limits: AdmissionLedger;
}

export interface AdmitRequest {
  readonly exchange: Exchange;
  /** Body bytes read for the decision (TTS JSON routes). */
  readonly prefix?: BodyPrefix;
  /** True once the caller has gone away. */
  readonly gone: () => boolean;
  /** Writes a response the edge answers itself. */
  readonly answer: (r: LocalResponse) => void;
}

export interface Admitted {
  readonly plan: UpstreamPlan;
  readonly observer: GuardedObserver;
  /** The allow the plan applies; WebSocket sessions check their frames against it. */
  readonly decision: Allow;
  /** The exchange's snapshot (the one the decision and the plan used). */
  readonly snapshot: Snapshot;
  /** TTS WebSockets: admits each synthesis on the socket against the limits (edge/limits.ts). */
  readonly frameGate?: SynthesisGate;
  /**
   * REST/SSE on a model several usable accounts serve: after a provider 429, the plan and allow of
   * another account (its unit taken, the first released), once; undefined when none has room.
   */
  readonly reroute?: () => { readonly plan: UpstreamPlan; readonly decision: Allow } | undefined;
}

/**
 * Decides and plans one exchange. Resolves with the plan to proxy, or `undefined` when the exchange
 * is already over (answered locally or the caller left), its observer then ended.
 */
export async function admit(deps: AdmitDeps, a: AdmitRequest): Promise<Admitted | undefined> {
  const { exchange: x, prefix } = a;
  const input = buildCheckInput(x, prefix ? { bytes: prefix.forDecision, partial: prefix.partial } : undefined);
  const decision = await askAuthorizer(deps.authorizer, input, x, deps.logger);
  const observer = openObserver(deps.observe, x, decision, deps.logger);
  if (a.gone()) return void observer.end({ status: 0, error: 'client_aborted' });
  if (decision.kind === 'deny') {
    a.answer(denyResponse(decision));
    return void observer.end({ status: decision.status });
  }
  // A remote authorizer can allow while this process has no snapshot: it cannot plan, so it
  // cannot decide either (the one "cannot decide" answer).
  if (!x.snapshot) {
    const cannot = authzUnavailable();
    a.answer(denyResponse(cannot));
    return void observer.end({ status: cannot.status, error: cannot.code });
  }
  const plan = planUpstream(x, decision);
  if (plan.kind !== 'upstream') {
    a.answer(gatewayError('no_route', plan.message));
    return void observer.end({ status: statusOf('no_route'), error: 'no_route' });
  }
  // Last, so that nothing refused above holds a unit; released by the observer's end. A team with
  // a bounded wait may queue here (edge/limits.ts), so the caller may have left meanwhile.
  const limited = await admitLimitsWaiting(deps.limits, decision, x.snapshot, observer, a.gone);
  const waited = limited.waitedMs !== undefined ? { waitedMs: limited.waitedMs } : {};
  if (a.gone()) {
    // Left while waiting (nothing held), or just as it was admitted (the unit goes back now).
    const end = { status: 0, error: 'client_aborted', ...waited };
    return void (limited.kind === 'admitted' ? limited.observer.end(end) : observer.end(end));
  }
  if (limited.kind === 'refused') {
    a.answer(limited.response);
    // The span names the account the 429's body names: with several, the one tried first, which
    // need not be the decision's `account`.
    const refusedAccount = limited.refusal.scope === 'account' ? { account: limited.refusal.name } : {};
    const refusedBy = { scope: limited.refusal.scope, limit: limited.refusal.limit };
    return void observer.end({ status: limited.response.status, error: limited.code, ...refusedAccount, refusedBy, ...waited });
  }
  // Admission chose another of the model's accounts: the same plan with that account's key.
  const bound = limited.decision;
  const boundPlan = bound === decision ? plan : planUpstream(x, bound);
  const reroute = limited.reroute;
  return {
    plan: boundPlan.kind === 'upstream' ? boundPlan : plan,
    observer: limited.observer,
    decision: bound,
    snapshot: x.snapshot,
    ...(limited.frameGate ? { frameGate: limited.frameGate } : {}),
    ...(reroute
      ? {
          reroute: () => {
            const next = reroute();
            const p = next && planUpstream(x, next);
            return next && p?.kind === 'upstream' ? { plan: p, decision: next } : undefined;
          },
        }
      : {}),
  };
}
