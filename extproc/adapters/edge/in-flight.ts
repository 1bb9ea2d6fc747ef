/**
 * What the edge still owes at shutdown: HTTP requests whose response has not finished (REST, SSE,
 * and requests still being decided), upgrades still being decided, and exchanges whose observer has
 * not ended. An observer's `end` is where the usage span is published, so once all three are zero
 * no span of a served request can still arrive — the usage sink may close.
 */
import type { ServerResponse } from 'node:http';
import type { ExchangeObserver, ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';

export interface InFlight {
  /** Counts `res` until it closes (finished or cut). */
  trackResponse(res: ServerResponse): void;
  /** Counts an upgrade until its decision settled (after that its observer, if any, is counted). */
  trackUpgrade(decided: Promise<unknown>): void;
  /** `factory`, with every observer it opens counted until its `end`. */
  observe(factory: ExchangeObserverFactory): ExchangeObserverFactory;
  readonly requests: number;
  /**
   * From now on the edge itself cuts what is left (the drain window is over): an exchange that
   * then ends as `client_aborted` was ended by the gateway, and its span says `drain_timeout`.
   */
  cutting(): void;
  /** Resolves true once no HTTP response is in flight, false when `ms` passed first. */
  requestsDone(ms: number): Promise<boolean>;
  /** Resolves true once nothing at all is in flight (every span published), false after `ms`. */
  settled(ms: number): Promise<boolean>;
}

export function createInFlight(): InFlight {
  let requests = 0;
  let upgrades = 0;
  let observers = 0;
  let cut = false;
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const w of [...waiters]) w();
  };
  const until = (done: () => boolean, ms: number): Promise<boolean> => {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish(true);
      };
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(done()), Math.max(0, ms));
      waiters.add(check);
    });
  };
  return {
    get requests() {
      return requests;
    },
    cutting() {
      cut = true;
    },
    trackResponse(res) {
      requests++;
      res.once('close', () => {
        requests--;
        changed();
      });
    },
    trackUpgrade(decided) {
      upgrades++;
      const done = () => {
        upgrades--;
        changed();
      };
      decided.then(done, done);
    },
    observe(factory) {
      return (exchange, decision) => {
        const inner = factory(exchange, decision);
        observers++;
        let ended = false;
        const counted: ExchangeObserver = {
          requestChunk: (c) => inner.requestChunk(c),
          responseStart: (s, h) => inner.responseStart(s, h),
          responseChunk: (c) => inner.responseChunk(c),
          clientMessage: (d, b) => inner.clientMessage(d, b),
          upstreamMessage: (d, b) => inner.upstreamMessage(d, b),
          end: (outcome) => {
            try {
              inner.end(cut && outcome.error === 'client_aborted' ? { ...outcome, error: 'drain_timeout' } : outcome);
            } finally {
              if (!ended) {
                ended = true;
                observers--;
                changed();
              }
            }
          },
        };
        return counted;
      };
    },
    requestsDone: (ms) => until(() => requests === 0, ms),
    settled: (ms) => until(() => requests === 0 && upgrades === 0 && observers === 0, ms),
  };
}
