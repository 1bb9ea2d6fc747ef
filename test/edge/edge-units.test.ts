import { describe, expect, it } from 'vitest';
import { buildCheckInput, routeTraits } from '../../extproc/core/exchange/check-input.ts';
import { parseEdgeArgs } from '../../extproc/main/commands/edge.ts';
import { relayRawHeaders } from '../../extproc/core/exchange/headers.ts';
import { removeQueryParams } from '../../extproc/core/exchange/query.ts';
import { planUpstream } from '../../extproc/core/exchange/upstream-plan.ts';
import { sendableCloseCode } from '../../extproc/adapters/edge/ws-proxy.ts';
import { snapshotFor } from './helpers.ts';

describe('removeQueryParams', () => {
  it('drops every named parameter and keeps the others byte for byte', () => {
    expect(removeQueryParams('/a?token=x&model=pulse&token=y&t=a%20b+c', ['token'])).toBe('/a?model=pulse&t=a%20b+c');
    expect(removeQueryParams('/a?token=x', ['token'])).toBe('/a');
    expect(removeQueryParams('/a?to%6Ben=x&b', ['token'])).toBe('/a?b');
    expect(removeQueryParams('/a', ['token'])).toBe('/a');
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
    const input = buildCheckInput({
      method: 'POST',
      pathWithQuery: '/smallest/waves/v1/tts?x=1',
      headers: { host: 'gw:8080', 'content-type': 'application/json' },
      requestId: 'rid',
      scheme: 'http',
      body: new Uint8Array([1]),
      partialBody: true,
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
    const plan = planUpstream({
      snapshot,
      decision: {
        kind: 'allow',
        headersToSet: [{ key: 'Authorization', value: 'Bearer sk' }],
        headersToRemove: ['x-drop'],
        queryParametersToRemove: [],
        metadata: { provider: 'smallest' },
      },
      pathWithQuery: '/smallest/api/v1/pulse/get_text?token=t&language=en',
      callerHeaders: {
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
      websocket: false,
    });
    expect(plan.kind).toBe('upstream');
    if (plan.kind !== 'upstream') return;
    expect(plan.url.href).toBe('http://up.example:7070/waves/v1/pulse/get_text?language=en');
    expect(plan.headers).toEqual({ authorization: 'Bearer sk', 'x-source': 'sdk', 'x-request-id': 'rid', host: 'up.example:7070' });
  });

  it('refuses a provider the snapshot does not know', () => {
    const plan = planUpstream({
      snapshot,
      decision: { kind: 'allow', headersToSet: [], headersToRemove: [], queryParametersToRemove: [], metadata: { provider: 'other' } },
      pathWithQuery: '/other/x',
      callerHeaders: {},
      requestId: 'r',
      websocket: false,
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

describe('parseEdgeArgs', () => {
  it('validates the command line', () => {
    expect(parseEdgeArgs(['--config', 'c.yaml'])).toEqual({ ok: true, value: { config: 'c.yaml', host: '0.0.0.0', port: 8080, authz: 'inproc', 'http-port': 9465, 'spool-dir': '.voicegate/edge' } });
    expect(parseEdgeArgs(['--config', 'c.yaml', '--port', '0', '--authz', 'grpc://127.0.0.1:50051'])).toMatchObject({ ok: true, value: { port: 0 } });
    expect(parseEdgeArgs(['--config', 'c.yaml', '--authz', 'http://x']).ok).toBe(false);
    expect(parseEdgeArgs([]).ok).toBe(false);
    expect(parseEdgeArgs(['--nope']).ok).toBe(false);
  });
});
