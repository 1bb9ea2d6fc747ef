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
  const guard = <A extends unknown[]>(name: string, fn: (...args: A) => void) =>
    (...args: A): void => {
      if (ended) return;
      try {
        fn(...args);
      } catch (err) {
        logger.warn({ err, requestId: exchange.requestId, method: name }, 'exchange observer threw');
      }
    };
  return {
    get ended() {
      return ended;
    },
    requestChunk: guard('requestChunk', (c: Uint8Array) => inner.requestChunk(c)),
    responseStart: guard('responseStart', (s: number, h: Readonly<Record<string, string | string[] | undefined>>) =>
      inner.responseStart(s, h),
    ),
    responseChunk: guard('responseChunk', (c: Uint8Array) => inner.responseChunk(c)),
    clientMessage: guard('clientMessage', (d: Uint8Array, b: boolean) => inner.clientMessage(d, b)),
    upstreamMessage: guard('upstreamMessage', (d: Uint8Array, b: boolean) => inner.upstreamMessage(d, b)),
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
