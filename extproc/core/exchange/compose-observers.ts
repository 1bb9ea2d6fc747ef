/**
 * Fans one exchange out to several observers (usage spans, Prometheus metrics), so each concern
 * stays its own small observer and the edge still reports through one.
 */
import type { ExchangeObserver, ExchangeObserverFactory } from './exchange-observer.ts';

export function composeObservers(...factories: ReadonlyArray<ExchangeObserverFactory | undefined>): ExchangeObserverFactory | undefined {
  const present = factories.filter((f): f is ExchangeObserverFactory => f !== undefined);
  if (present.length <= 1) return present[0];
  return (exchange, decision) => {
    const all: ExchangeObserver[] = present.map((f) => f(exchange, decision));
    return {
      requestChunk: (c) => all.forEach((o) => o.requestChunk(c)),
      responseStart: (s, h) => all.forEach((o) => o.responseStart(s, h)),
      responseChunk: (c) => all.forEach((o) => o.responseChunk(c)),
      clientMessage: (d, b) => all.forEach((o) => o.clientMessage(d, b)),
      upstreamMessage: (d, b) => all.forEach((o) => o.upstreamMessage(d, b)),
      end: (outcome) => all.forEach((o) => o.end(outcome)),
    };
  };
}
