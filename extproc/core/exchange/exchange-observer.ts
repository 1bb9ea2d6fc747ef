/**
 * What the embedded edge reports about each exchange (REST request, SSE stream or WebSocket
 * session) while it proxies it. Usage metering implements this; the edge never computes spans
 * itself. Every method must be cheap and must never throw into the data path.
 */
import type { Decision } from '../decision/types.ts';
import type { Exchange } from './exchange.ts';

export interface ExchangeEnd {
  /** HTTP status sent to the client; 101 for WebSockets that opened. */
  readonly status: number;
  /** WebSocket close code (as sent to the client) when the exchange was a WebSocket session. */
  readonly closeCode?: number;
  /** Short machine reason when the gateway ended it (`upstream_unreachable`, `client_aborted`…). */
  readonly error?: string;
  /**
   * Which side ended it, when the transport knows better than `error` tells (a normal end: the
   * side that closed first; a refused frame: policy). Absent: derived from `error` (usage/span-builder.ts).
   */
  readonly endedBy?: ExchangeEndSide;
  /**
   * The account that served the exchange when it is not the decision's `account`: the edge's
   * admission chose another of the model's accounts, or a provider 429 moved it (adapters/edge/limits.ts).
   */
  readonly account?: string;
  /** Milliseconds it waited in a team's bounded wait for a limit (core/limits/waiters.ts); absent when it did not wait. */
  readonly waitedMs?: number;
  /** The limit whose 429 answered it: its scope and name (`max_units`, `concurrency`…). */
  readonly refusedBy?: { readonly scope: 'user' | 'team' | 'account'; readonly limit: string };
}

/** Who ended an exchange (the span's `endedBy`). */
export type ExchangeEndSide = 'client' | 'upstream' | 'gateway' | 'policy' | '';

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

/**
 * Opens the observer of one exchange once it is decided. The exchange carries the snapshot it
 * arrived with (prices, upstream host); an observer reads only the fields it needs from it.
 */
export type ExchangeObserverFactory = (exchange: Exchange, decision: Decision) => ExchangeObserver;

/** Observer that records nothing: the default when usage is off. */
export const NOOP_OBSERVER: ExchangeObserver = Object.freeze({
  requestChunk() {},
  responseStart() {},
  responseChunk() {},
  clientMessage() {},
  upstreamMessage() {},
  end() {},
});
