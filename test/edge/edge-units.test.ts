import { describe, expect, it } from 'vitest';
import { buildCheckInput, routeTraits } from '../../extproc/core/exchange/check-input.ts';
import { EDGE_OPTIONS } from '../../extproc/main/options.ts';
import { parseOptions } from '../../extproc/main/parse.ts';
import { relayRawHeaders } from '../../extproc/core/exchange/headers.ts';
import { removeQueryParams } from '../../extproc/core/decision/query.ts';
import type { Exchange } from '../../extproc/core/exchange/exchange.ts';
import { planUpstream } from '../../extproc/core/exchange/upstream-plan.ts';
import { sendableCloseCode } from '../../extproc/adapters/edge/ws-proxy.ts';
import { snapshotFor } from './helpers.ts';

function exchange(over: Partial<Exchange>): Exchange {
  return {
    requestId: 'r', startedAtMs: 0, startHr: 0n, method: 'POST', pathWithQuery: '/', scheme: 'http',
    headers: {}, routeKind: 'rest', upgrade: false, snapshot: undefined, ...over,
  };
}

describe('removeQueryParams', () => {
  it('drops every named parameter and keeps the others byte for byte', () => {
    expect(removeQueryParams('/a?token=x&model=pulse&token=y&t=a%20b+c', ['token'])).toBe('/a?model=pulse&t=a%20b+c');
    expect(removeQueryParams('/a?token=x', ['token'])).toBe('/a');
    expect(removeQueryParams('/a?to%6Ben=x&b', ['token'])).toBe('/a?b');
    expect(removeQueryParams('/a', ['token'])).toBe('/a');
    expect(removeQueryParams('/a?b=1&&c', ['token'])).toBe('/a?b=1&&c');
  });
});

describe('routeTraits', () => {
  it('sends the body only on POST TTS JSON routes, never on audio uploads or upgrades', () => {
    expect(routeTraits('POST', '/smallest/waves/v1/tts', false)).toEqual({ sendsBody: true, kind: 'rest' });
    expect(routeTraits('POST', '/smallest/waves/v1/tts/live', false)).toEqual({ sendsBody: true, kind: 'sse' });
    expect(routeTraits('POST', '/smallest/api/v1/lightning/get_speech', false).sendsBody).toBe(true);
    expect(routeTraits('POST', '/smallest/waves/v1/lightning-v3.1/stream?x=1', false).sendsBody).toBe(true);
    expect(routeTraits('POST', '/smallest/waves/v1/pulse/get_text', false).sendsBody).toBe(false);
    expect(routeTraits('POST', '/smallest/waves/v1/stt?model=pulse', false).sendsBody).toBe(false);
    expect(routeTraits('GET', '/smallest/waves/v1/tts/live', true)).toEqual({ sendsBody: false, kind: 'websocket' });
  });
});

describe('buildCheckInput', () => {
  it('adds pseudo-headers, moves host to :authority and marks a partial body', () => {
    const input = buildCheckInput(exchange({ pathWithQuery: '/smallest/waves/v1/tts?x=1', headers: { host: ['gw:8080'], 'content-type': ['application/json'] }, requestId: 'rid' }), {
      bytes: new Uint8Array([1]),
      partial: true,
    });
    expect(input.headers).toMatchObject({
      ':method': 'POST',
      ':path': '/smallest/waves/v1/tts?x=1',
      ':authority': 'gw:8080',
      'x-request-id': 'rid',
      'x-envoy-auth-partial-body': 'true',
    });
    expect(input.headers.host).toBeUndefined();
    expect(input.host).toBe('gw:8080');
  });
});

describe('planUpstream', () => {
  const snapshot = snapshotFor('http://up.example:7070/');
  it('sets, then removes, then strips the query token, and rewrites host', () => {
    const plan = planUpstream(
      exchange({
        snapshot,
        pathWithQuery: '/smallest/api/v1/pulse/get_text?token=t&language=en',
        headers: {
          authorization: ['Bearer jwt'],
          cookie: ['c=1'],
          'x-drop': ['1'],
          connection: ['keep-alive, x-hop'],
          'x-hop': ['1'],
          'transfer-encoding': ['chunked'],
          'x-source': ['sdk'],
          host: ['gw'],
        },
        requestId: 'rid',
      }),
      {
        kind: 'allow',
        headersToSet: [{ key: 'Authorization', value: 'Bearer sk' }],
        headersToRemove: ['x-drop'],
        // No upstream_path: the path is derived as envoy.yaml does, with the decision's removals.
        queryParametersToRemove: ['token'],
        metadata: { provider: 'smallest' },
      },
    );
    expect(plan.kind).toBe('upstream');
    if (plan.kind !== 'upstream') return;
    expect(plan.url.href).toBe('http://up.example:7070/waves/v1/pulse/get_text?language=en');
    expect(plan.headers).toEqual({ authorization: 'Bearer sk', 'x-source': 'sdk', 'x-request-id': 'rid', host: 'up.example:7070' });
  });

  it('refuses a provider the snapshot does not know', () => {
    const plan = planUpstream(exchange({ snapshot, pathWithQuery: '/other/x', requestId: 'r' }), {
      kind: 'allow',
      headersToSet: [],
      headersToRemove: [],
      queryParametersToRemove: [],
      metadata: { provider: 'other' },
    });
    expect(plan.kind).toBe('no-route');
  });
});

describe('relayRawHeaders and close codes', () => {
  it('drops hop-by-hop fields, keeps casing and repeats', () => {
    expect(
      relayRawHeaders(['Content-Type', 'a', 'Connection', 'close, X-Hop', 'X-Hop', '1', 'Set-Cookie', 'a', 'Set-Cookie', 'b', 'Keep-Alive', 't=5']),
    ).toEqual(['Content-Type', 'a', 'Set-Cookie', 'a', 'Set-Cookie', 'b']);
  });
  it('maps codes that may not be sent', () => {
    expect([1000, 1005, 1006, 1008, 1015, 4001, 999].map(sendableCloseCode)).toEqual([1000, 1000, 1011, 1008, 1011, 4001, 1011]);
  });
});

describe('edge options', () => {
  const parseEdgeArgs = (args: string[]) => parseOptions(EDGE_OPTIONS, args, {});
  it('validates the command line', () => {
    // toMatchObject: the defaults a user relies on, without freezing the list of every flag.
    expect(parseEdgeArgs(['--config', 'c.yaml'])).toMatchObject({
      ok: true,
      value: { config: 'c.yaml', host: '0.0.0.0', port: 8080, authz: 'inproc', authzTimeout: 1000, authzReconnectMax: 1000, drainTimeout: 30_000, httpPort: 9465, spoolDir: '.voicegate/edge', nats: undefined, stream: 'VOICEGATE_SPANS', subjectPrefix: 'voicegate.spans', drainDelay: 0,
        headersTimeout: 10_000, decisionBodyTimeout: 10_000, maxConnections: 1024, maxWsPayload: 16 * 1024 * 1024,
        maxSession: 3_600_000, sessionTokenGrace: 0,
        spoolMaxBytes: 256 * 1024 * 1024, spanFileMaxBytes: 64 * 1024 * 1024, spanFileKeep: 5,
        limits: 'auto', grantBucket: 'voicegate_grants' },
    });
    expect(parseEdgeArgs(['--config', 'c.yaml', '--port', '0', '--authz', 'grpc://127.0.0.1:50051'])).toMatchObject({ ok: true, value: { port: 0 } });
    expect(parseEdgeArgs(['--config', 'c.yaml', '--authz', 'http://x']).ok).toBe(false);
    expect(parseEdgeArgs([]).ok).toBe(false);
    expect(parseEdgeArgs(['--nope']).ok).toBe(false);
  });
});
