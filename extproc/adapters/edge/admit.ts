/**
 * What every proxied exchange goes through before any byte reaches the provider, in Envoy's filter
 * order: ext_authz decides, ext_proc (the observer) opens, then a denial, a route no provider
 * serves, or a missing snapshot is answered locally. REST and WebSocket upgrades differ only in how
 * they write that local answer, so they hand it in.
 */
import type { Logger } from 'pino';
import type { Authorizer } from '../../core/decision/types.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import type { BodyPrefix } from './body-prefix.ts';
import { buildCheckInput } from '../../core/exchange/check-input.ts';
import { decide, exchangeStart, type ArrivalFacts } from '../../core/exchange/exchange-start.ts';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import { denyResponse, gatewayError, type LocalResponse } from '../../core/exchange/responses.ts';
import { openObserver, type GuardedObserver } from '../../core/exchange/safe-observer.ts';
import { planUpstream, type UpstreamPlan } from '../../core/exchange/upstream-plan.ts';

/** The exchange as it arrived, after the connection manager's header mutations. */
export interface Arrival extends ArrivalFacts {
  readonly scheme: 'http' | 'https';
  /** Caller headers as `headersDistinct` gives them, with x-forwarded-* already set. */
  readonly callerHeaders: Readonly<Record<string, readonly string[] | undefined>>;
}

export interface AdmitDeps {
  readonly authorizer: Authorizer;
  readonly observe?: ExchangeObserverFactory;
  readonly logger: Logger;
}

export interface AdmitRequest {
  readonly facts: Arrival;
  /** The snapshot current when the request arrived. */
  readonly snapshot: Snapshot | undefined;
  /** Body bytes read for the decision (TTS JSON routes). */
  readonly prefix?: BodyPrefix;
  readonly websocket: boolean;
  /** True once the caller has gone away. */
  readonly gone: () => boolean;
  /** Writes a response the edge answers itself. */
  readonly answer: (r: LocalResponse) => void;
}

export interface Admitted {
  readonly plan: UpstreamPlan;
  readonly observer: GuardedObserver;
}

/**
 * Decides and plans one exchange. Resolves with the plan to proxy, or `undefined` when the exchange
 * is already over (answered locally or the caller left), its observer then ended.
 */
export async function admit(deps: AdmitDeps, a: AdmitRequest): Promise<Admitted | undefined> {
  const { facts, prefix } = a;
  const input = buildCheckInput({
    method: facts.method,
    pathWithQuery: facts.pathWithQuery,
    headers: facts.headers,
    requestId: facts.requestId,
    scheme: facts.scheme,
    ...(prefix ? { body: prefix.forDecision, partialBody: prefix.partial } : {}),
  });
  const decision = await decide(deps.authorizer, input, deps.logger);
  const observer = openObserver(
    deps.observe,
    exchangeStart(prefix ? { ...facts, requestBody: prefix.forDecision } : facts, decision),
    deps.logger,
  );
  if (a.gone()) return void observer.end({ status: 0, error: 'client_aborted' });
  if (decision.kind === 'deny') {
    a.answer(denyResponse(decision));
    return void observer.end({ status: decision.status });
  }
  const plan = a.snapshot
    ? planUpstream({
        snapshot: a.snapshot,
        decision,
        pathWithQuery: facts.pathWithQuery,
        callerHeaders: facts.callerHeaders,
        requestId: facts.requestId,
        websocket: a.websocket,
      })
    : undefined;
  if (plan?.kind !== 'upstream') {
    const r = plan
      ? gatewayError(404, 'no_route', plan.message)
      : gatewayError(503, 'no_snapshot', 'The gateway has no configuration loaded yet.');
    a.answer(r);
    return void observer.end({ status: r.status, error: plan ? 'no_route' : 'no_snapshot' });
  }
  return { plan, observer };
}
