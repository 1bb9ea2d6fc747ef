import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import type { ExchangeObserver, ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import type { Exchange } from '../../core/exchange/exchange.ts';
import type { Decision, DecisionMetadata, RouteKind } from '../../core/decision/types.ts';
import { createExchangeMetrics, statusClass } from './exchange-metrics.ts';

interface Start {
  routeKind?: RouteKind;
  decision?: 'allow' | 'deny';
  metadata?: DecisionMetadata;
}

/** Opens `observe` on an exchange built from `over` (the arguments the edge passes). */
function open(observe: ExchangeObserverFactory, over: Start = {}): ExchangeObserver {
  const exchange: Exchange = {
    requestId: 'r1',
    startedAtMs: Date.now(),
    startHr: process.hrtime.bigint(),
    method: 'POST',
    pathWithQuery: '/smallest/waves/v1/lightning-v3.1/get_speech',
    scheme: 'http',
    headers: {},
    routeKind: over.routeKind ?? 'rest',
    upgrade: false,
    snapshot: undefined,
  };
  const metadata = over.metadata ?? { endpoint: 'tts.sync', model: 'lightning-v3.1', user: 'alice' };
  const decision: Decision =
    over.decision === 'deny'
      ? { kind: 'deny', status: 403, code: 'not_entitled', message: '', headers: {}, metadata }
      : { kind: 'allow', headersToSet: [], headersToRemove: [], queryParametersToRemove: [], metadata };
  return observe(exchange, decision);
}

async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const match = (metric?.values as Array<{ labels: Record<string, string | number>; value: number; metricName?: string }> | undefined)?.find(
    (v) => (v.metricName === undefined || v.metricName === name || v.metricName === `${name}_count`) && Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l),
  );
  return match?.value;
}

describe('edge exchange metrics', () => {
  it('counts finished exchanges by decision and status class, tracks in-flight ones, never labels the user', async () => {
    const registry = new Registry();
    const observe = createExchangeMetrics(registry);
    const a = open(observe);
    const ws = open(observe, { routeKind: 'websocket', metadata: { endpoint: 'tts.ws', model: 'lightning-v3.1' } });
    expect(await value(registry, 'voicegate_edge_active_exchanges', { route_kind: 'rest' })).toBe(1);
    a.responseStart(200, {});
    a.end({ status: 200 });
    open(observe, { decision: 'deny', metadata: {} }).end({ status: 403 });
    ws.responseStart(101, {});
    ws.end({ status: 101, closeCode: 1000 });

    expect(await value(registry, 'voicegate_edge_requests_total', { endpoint: 'tts.sync', decision: 'allow', status_class: '2xx' })).toBe(1);
    expect(await value(registry, 'voicegate_edge_requests_total', { endpoint: 'none', decision: 'deny', status_class: '4xx' })).toBe(1);
    expect(await value(registry, 'voicegate_edge_requests_total', { route_kind: 'websocket', status_class: '101' })).toBe(1);
    expect(await value(registry, 'voicegate_edge_active_exchanges', { route_kind: 'rest' })).toBe(0);
    expect(await registry.metrics()).not.toContain('alice');
  });

  it('maps statuses to classes', () => {
    expect([0, 101, 204, 302, 429, 502].map(statusClass)).toEqual(['none', '101', '2xx', '3xx', '4xx', '5xx']);
  });

  it('composes observers so each sees every event once', () => {
    const seen: string[] = [];
    const recorder = (tag: string) => (): ExchangeObserver => ({
      requestChunk: () => seen.push(`${tag}:req`),
      responseStart: () => seen.push(`${tag}:head`),
      responseChunk: () => seen.push(`${tag}:chunk`),
      clientMessage: () => seen.push(`${tag}:client`),
      upstreamMessage: () => seen.push(`${tag}:upstream`),
      end: () => seen.push(`${tag}:end`),
    });
    const one = recorder('a');
    expect(composeObservers(one, undefined)).toBe(one);
    const both = open(composeObservers(one, recorder('b'))!);
    both.responseStart(200, {});
    both.end({ status: 200 });
    expect(seen).toEqual(['a:head', 'b:head', 'a:end', 'b:end']);
  });
});
