/**
 * Wraps an observer so that it can never break proxying: every call is guarded, and `end` runs at
 * most once whatever path (finish, abort, error) reaches it first.
 */
import type { Logger } from 'pino';
import {
  NOOP_OBSERVER,
  type ExchangeEnd,
  type ExchangeObserver,
  type ExchangeObserverFactory,
} from './exchange-observer.ts';
import type { Decision } from '../decision/types.ts';
import type { Exchange } from './exchange.ts';

/** An observer whose `ended` flag lets transports skip work once the exchange is over. */
export interface GuardedObserver extends ExchangeObserver {
  readonly ended: boolean;
}

/** Creates the exchange's observer; a throwing factory or method is logged and ignored. */
export function openObserver(
  factory: ExchangeObserverFactory | undefined,
  exchange: Exchange,
  decision: Decision,
  logger: Logger,
): GuardedObserver {
  let inner: ExchangeObserver = NOOP_OBSERVER;
  if (factory) {
    try {
      inner = factory(exchange, decision);
    } catch (err) {
      logger.warn({ err, requestId: exchange.requestId }, 'exchange observer factory threw');
    }
  }
  let ended = false;
  // One method per call, no rest/spread: these run for every chunk and frame of the exchange.
  const threw = (err: unknown, method: string): void => {
    logger.warn({ err, requestId: exchange.requestId, method }, 'exchange observer threw');
  };
  return {
    get ended() {
      return ended;
    },
    requestChunk(c: Uint8Array) {
      if (ended) return;
      try {
        inner.requestChunk(c);
      } catch (err) {
        threw(err, 'requestChunk');
      }
    },
    responseStart(s: number, h: Readonly<Record<string, string | string[] | undefined>>) {
      if (ended) return;
      try {
        inner.responseStart(s, h);
      } catch (err) {
        threw(err, 'responseStart');
      }
    },
    responseChunk(c: Uint8Array) {
      if (ended) return;
      try {
        inner.responseChunk(c);
      } catch (err) {
        threw(err, 'responseChunk');
      }
    },
    clientMessage(d: Uint8Array, b: boolean) {
      if (ended) return;
      try {
        inner.clientMessage(d, b);
      } catch (err) {
        threw(err, 'clientMessage');
      }
    },
    upstreamMessage(d: Uint8Array, b: boolean) {
      if (ended) return;
      try {
        inner.upstreamMessage(d, b);
      } catch (err) {
        threw(err, 'upstreamMessage');
      }
    },
    end: (outcome: ExchangeEnd) => {
      if (ended) return;
      ended = true;
      try {
        inner.end(outcome);
      } catch (err) {
        logger.warn({ err, requestId: exchange.requestId, method: 'end' }, 'exchange observer threw');
      }
    },
  };
}
