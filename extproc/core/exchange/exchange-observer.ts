/**
 * What the embedded edge reports about each exchange (REST request, SSE stream or WebSocket
 * session) while it proxies it. Usage metering implements this; the edge never computes spans
 * itself. Every method must be cheap and must never throw into the data path.
 */
import type { DecisionMetadata, RouteKind } from '../decision/types.ts';

export interface ExchangeStart {
  /** The gateway's request id (`x-request-id` as sent upstream). */
  readonly requestId: string;
  /** Wall clock at arrival, ms since epoch. */
  readonly startedAtMs: number;
  /** `process.hrtime.bigint()` at arrival, for durations. */
  readonly startHr: bigint;
  readonly method: string;
  /** Public path as received, with the `token` query parameter already removed. */
  readonly path: string;
  readonly routeKind: RouteKind;
  /** Caller headers with every credential-bearing header removed (authorization, cookie, …). */
  readonly headers: Readonly<Record<string, string>>;
  readonly decision: 'allow' | 'deny';
  /** Decision metadata (complete on allow; whatever was known on deny). */
  readonly metadata: DecisionMetadata;
  /** Request body as buffered for the decision (TTS JSON routes), when it was. */
  readonly requestBody?: Uint8Array;
}

export interface ExchangeEnd {
  /** HTTP status sent to the client; 101 for WebSockets that opened. */
  readonly status: number;
  /** WebSocket close code (as sent to the client) when the exchange was a WebSocket session. */
  readonly closeCode?: number;
  /** Short machine reason when the gateway ended it (`upstream_unreachable`, `client_aborted`…). */
  readonly error?: string;
}

export interface ExchangeObserver {
  /** A chunk of request body forwarded upstream (REST/SSE). */
  requestChunk(chunk: Uint8Array): void;
  /** Upstream response head (REST/SSE), or the upstream's 101 for WebSockets. */
  responseStart(status: number, headers: Readonly<Record<string, string | string[] | undefined>>): void;
  /** A chunk of response body delivered to the client (REST/SSE). */
  responseChunk(chunk: Uint8Array): void;
  /** A WebSocket message from the client, relayed upstream. */
  clientMessage(data: Uint8Array, isBinary: boolean): void;
  /** A WebSocket message from the upstream, relayed to the client. */
  upstreamMessage(data: Uint8Array, isBinary: boolean): void;
  /** Called exactly once, when the exchange is over for good. */
  end(outcome: ExchangeEnd): void;
}

export type ExchangeObserverFactory = (start: ExchangeStart) => ExchangeObserver;

/** Observer that records nothing: the default when usage is off. */
export const NOOP_OBSERVER: ExchangeObserver = Object.freeze({
  requestChunk() {},
  responseStart() {},
  responseChunk() {},
  clientMessage() {},
  upstreamMessage() {},
  end() {},
});
