/**
 * One exchange (REST request, SSE stream or WebSocket session) as the transport received it: the
 * only description of an incoming request besides the Envoy-shaped CheckInput derived from it.
 * The transport builds it once, at arrival, with the snapshot in force then; the decision, the
 * upstream plan and the metering of the exchange all use that snapshot, so a reload mid-request
 * (while a body is read, say) never mixes two configurations in one exchange.
 */
import type { Logger } from 'pino';
import type { Snapshot } from '../config/snapshot.ts';
import { authzUnavailable } from '../decision/decide.ts';
import type { Authorizer, CheckInput, Decision, RouteKind } from '../decision/types.ts';

export interface Exchange {
  /** The gateway's request id (`x-request-id` as sent upstream and to the decision). */
  readonly requestId: string;
  /** Wall clock at arrival, ms since epoch. */
  readonly startedAtMs: number;
  /** `process.hrtime.bigint()` at arrival, for durations. */
  readonly startHr: bigint;
  readonly method: string;
  /** Path with query exactly as received (it may still hold a `?token=`). */
  readonly pathWithQuery: string;
  readonly scheme: 'http' | 'https';
  /**
   * Caller headers, lower-case, every value kept (`headersDistinct`), after the connection
   * manager's mutations (`x-forwarded-*`, `x-request-id`). Credentials included: only the check
   * input reads them; the plan drops them and observers read allow-listed fields only.
   */
  readonly headers: Readonly<Record<string, readonly string[] | undefined>>;
  /** From the endpoint catalogue (`websocket` for every upgrade). */
  readonly routeKind: RouteKind;
  /** A WebSocket opening handshake. */
  readonly upgrade: boolean;
  /** The snapshot in force at arrival; undefined when none was loaded. */
  readonly snapshot: Snapshot | undefined;
}

/**
 * Asks the authorizer with the exchange's snapshot; a throw or rejection becomes a 503 denial,
 * never an allow (Envoy's `failure_mode_allow: false` + `status_on_error: 503`).
 */
export async function askAuthorizer(authorizer: Authorizer, input: CheckInput, x: Exchange, logger: Logger): Promise<Decision> {
  try {
    return await authorizer.check(input, x.snapshot);
  } catch (err) {
    logger.warn({ err, requestId: x.requestId }, 'authorizer failed; denying');
    return authzUnavailable();
  }
}

/** The first value of a header, as a string. */
export function headerValue(x: Exchange, name: string): string | undefined {
  return x.headers[name]?.[0];
}
