/**
 * Prometheus metrics of the embedded edge's traffic, as an exchange observer: requests by route
 * kind, endpoint, model, decision and status class; durations; time to the upstream's first byte;
 * exchanges in flight. Labels come from the decision (bounded by the config), never from the
 * caller (no user label: unbounded cardinality belongs in spans, not in Prometheus).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** `2xx`, `4xx`…; `101` stays itself (WebSocket sessions); 0 (client gone before an answer) is `none`. */
export function statusClass(status: number): string {
  if (status === 101) return '101';
  if (status < 100 || status > 599) return 'none';
  return `${Math.floor(status / 100)}xx`;
}

export function createExchangeMetrics(registry: Registry): ExchangeObserverFactory {
  const requests = new Counter({
    name: 'voicegate_edge_requests_total',
    help: 'Finished exchanges (REST requests, SSE streams, WebSocket sessions) through the edge',
    labelNames: ['route_kind', 'endpoint', 'model', 'decision', 'status_class'] as const,
    registers: [registry],
  });
  const timing = (name: string, help: string) =>
    new Histogram({ name, help, labelNames: ['route_kind', 'endpoint'] as const, buckets: DURATION_BUCKETS, registers: [registry] });
  const duration = timing('voicegate_edge_exchange_duration_seconds', 'Arrival to end of the exchange (whole stream or session)');
  const ttfb = timing('voicegate_edge_upstream_first_byte_seconds', "Arrival to the upstream's response head (or WebSocket 101)");
  const active = new Gauge({
    name: 'voicegate_edge_active_exchanges',
    help: 'Exchanges in flight through the edge',
    labelNames: ['route_kind'] as const,
    registers: [registry],
  });

  return (exchange, decision) => {
    const kind = exchange.routeKind;
    const endpoint = decision.metadata.endpoint ?? 'none';
    const model = decision.metadata.model ?? 'none';
    const seconds = () => Number(process.hrtime.bigint() - exchange.startHr) / 1e9;
    active.inc({ route_kind: kind });
    return {
      requestChunk() {},
      responseStart() {
        ttfb.observe({ route_kind: kind, endpoint }, seconds());
      },
      responseChunk() {},
      clientMessage() {},
      upstreamMessage() {},
      end(outcome) {
        active.dec({ route_kind: kind });
        duration.observe({ route_kind: kind, endpoint }, seconds());
        requests.inc({ route_kind: kind, endpoint, model, decision: decision.kind, status_class: statusClass(outcome.status) });
      },
    };
  };
}
