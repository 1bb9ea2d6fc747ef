/**
 * The transport-free part of every exchange: build the check input, ask the authorizer (fail
 * closed, as Envoy's `failure_mode_allow: false` + `status_on_error: 503`), and describe the
 * exchange for the observer.
 */
import type { Logger } from 'pino';
import { TOKEN_QUERY_PARAMETER } from '../decision/decide.ts';
import type { Authorizer, CheckInput, Decision, RouteKind } from '../decision/types.ts';
import { authzUnavailable } from '../decision/decide.ts';
import type { ExchangeStart } from './exchange-observer.ts';
import { withoutCredentials } from './headers.ts';
import { removeQueryParams } from './query.ts';

/** Asks the authorizer; a throw or rejection becomes a 503 denial, never an allow. */
export async function decide(authorizer: Authorizer, input: CheckInput, logger: Logger): Promise<Decision> {
  try {
    return await authorizer.check(input);
  } catch (err) {
    logger.warn({ err, requestId: input.requestId }, 'authorizer failed; denying');
    return authzUnavailable();
  }
}

export interface ArrivalFacts {
  readonly requestId: string;
  readonly startedAtMs: number;
  readonly startHr: bigint;
  readonly method: string;
  readonly pathWithQuery: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly routeKind: RouteKind;
  readonly requestBody?: Uint8Array;
}

const QUERY_CREDENTIALS: readonly string[] = [TOKEN_QUERY_PARAMETER];

/** The observer's view of an exchange: credentials and the `token` query parameter removed. */
export function exchangeStart(a: ArrivalFacts, decision: Decision): ExchangeStart {
  return {
    requestId: a.requestId,
    startedAtMs: a.startedAtMs,
    startHr: a.startHr,
    method: a.method,
    path: removeQueryParams(a.pathWithQuery, QUERY_CREDENTIALS),
    routeKind: decision.metadata.route_kind ?? a.routeKind,
    headers: withoutCredentials(a.headers),
    decision: decision.kind,
    metadata: decision.metadata,
    ...(a.requestBody !== undefined ? { requestBody: a.requestBody } : {}),
  };
}
