import { describe, expect, it } from 'vitest';
import type { ExchangeStart } from '../../extproc/core/exchange/exchange-observer.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import { MemorySink, testSnapshot, wav } from './helpers.ts';

const enc = (s: string) => new TextEncoder().encode(s);

function setup() {
  const sink = new MemorySink();
  const observe = createUsageObserverFactory({ sink, snapshot: testSnapshot });
  return { sink, observe };
}

function start(over: Partial<ExchangeStart>): ExchangeStart {
  return {
    requestId: 'req-1',
    startedAtMs: Date.parse('2025-03-01T10:00:00Z'),
    startHr: process.hrtime.bigint(),
    method: 'POST',
    path: '/smallest/waves/v1/lightning-v3.1/get_speech',
    routeKind: 'rest',
    headers: { 'content-type': 'application/json' },
    decision: 'allow',
    metadata: {
      user: 'alice', teams: 'ops,voice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts',
      account: 'smallest-tts', route_kind: 'rest', endpoint: 'tts.sync', config_version: 7,
    },
    ...over,
  };
}

describe('edge usage observer', () => {
  it('REST TTS: characters from the body, cost, ids, provider request id, exactly one span', () => {
    const { sink, observe } = setup();
    const body = enc(JSON.stringify({ text: 'Hello, wörld 👋', voice_id: 'magnus' }));
    const o = observe(start({ requestBody: body, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } }));
    o.requestChunk(body);
    o.responseStart(200, { 'x-request-id': 'prov-123', 'content-type': 'audio/wav' });
    o.responseChunk(new Uint8Array(500));
    o.end({ status: 200 });
    o.end({ status: 200 });
    expect(sink.spans).toHaveLength(1);
    const s = sink.spans[0]!;
    expect(s).toMatchObject({
      source: 'edge', status: 200, user: 'alice', teams: ['ops', 'voice'], model: 'lightning-v3.1', modelType: 'tts',
      characters: 14, costUsd: '0.000273', bytesIn: body.length, bytesOut: 500, providerRequestId: 'prov-123',
      requestId: 'req-1', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7', estimated: false,
      configVersion: 7, serverAddress: '127.0.0.1:7070', path: '/smallest/waves/v1/lightning-v3.1/get_speech',
    });
    expect(s.spanId).toMatch(/^[0-9a-f]{32}$/);
    expect(s.ttfbMs).toBeGreaterThanOrEqual(0);
  });

  it('SSE TTS: first audio frame timing', () => {
    const { sink, observe } = setup();
    const body = enc(JSON.stringify({ text: 'abcdefghij' }));
    const o = observe(start({ routeKind: 'sse', requestBody: body, metadata: { ...start({}).metadata, route_kind: 'sse', endpoint: 'tts.sse' } }));
    o.responseStart(200, { 'content-type': 'text/event-stream' });
    o.responseChunk(enc('event: audio\ndata: {"audio":"AAA=","done":false,"status":"206"}\n\n'));
    o.responseChunk(enc('data: {"status":"200","done":true}\n\n'));
    o.end({ status: 200 });
    const s = sink.spans[0]!;
    expect(s.routeKind).toBe('sse');
    expect(s.characters).toBe(10);
    expect(s.firstAudioMs).toBeGreaterThanOrEqual(s.ttfbMs!);
    expect(s.costUsd).toBe('0.000195');
  });

  it('WebSocket TTS: characters from each client message, keepalives ignored, close code kept', () => {
    const { sink, observe } = setup();
    const o = observe(start({ method: 'GET', routeKind: 'websocket', path: '/smallest/waves/v1/tts/live', metadata: { ...start({}).metadata, route_kind: 'websocket' } }));
    o.responseStart(101, {});
    o.clientMessage(enc(JSON.stringify({ text: 'Hello there.', voice_id: 'magnus', continue: true })), false);
    o.clientMessage(enc(JSON.stringify({ text: ' ' })), false);
    o.clientMessage(enc(JSON.stringify({ text: 'Bye!', flush: true })), false);
    o.upstreamMessage(enc(JSON.stringify({ status: 'chunk', data: { audio: 'AAAA' } })), false);
    o.upstreamMessage(enc(JSON.stringify({ status: 'complete' })), false);
    o.end({ status: 101, closeCode: 1000 });
    const s = sink.spans[0]!;
    expect(s).toMatchObject({ routeKind: 'websocket', status: 101, closeCode: 1000, characters: 16, costUsd: '0.000312', estimated: false });
    expect(s.firstAudioMs).toBeDefined();
  });

  it('WebSocket STT: seconds from binary bytes at the query rate and encoding; streaming price', () => {
    const { sink, observe } = setup();
    const md = { user: 'bob', provider: 'smallest', model: 'pulse', model_type: 'stt' as const, account: 'smallest-stt', route_kind: 'websocket' as const };
    const o = observe(start({ method: 'GET', routeKind: 'websocket', path: '/smallest/waves/v1/stt/live?model=pulse&sample_rate=8000&encoding=linear16', metadata: md }));
    o.responseStart(101, {});
    for (let i = 0; i < 30; i++) o.clientMessage(new Uint8Array(3200), true); // 96,000 B = 6 s at 8 kHz × 2 B
    o.clientMessage(enc('{"type":"close_stream"}'), false);
    o.upstreamMessage(enc(JSON.stringify({ type: 'transcription', transcript: 'hi', is_final: true })), false);
    o.end({ status: 101, closeCode: 1000 });
    const s = sink.spans[0]!;
    expect(s).toMatchObject({ audioSeconds: 6, costUsd: '0.0006', teams: [], modelType: 'stt', estimated: false });
    expect(s.firstTranscriptMs).toBeDefined();
  });

  it('REST STT: seconds from the WAV header', () => {
    const { sink, observe } = setup();
    const audio = wav(16000, 16, 32000 * 3);
    const md = { user: 'bob', provider: 'smallest', model: 'pulse', model_type: 'stt' as const, account: 'smallest-stt', route_kind: 'rest' as const };
    const o = observe(start({ path: '/smallest/waves/v1/pulse/get_text?language=en', metadata: md }));
    o.requestChunk(audio.subarray(0, 1000));
    o.requestChunk(audio.subarray(1000));
    o.responseStart(200, {});
    o.responseChunk(enc('{"status":"success","transcription":"x","metadata":{"duration":99}}'));
    o.end({ status: 200 });
    expect(sink.spans[0]).toMatchObject({ audioSeconds: 3, estimated: false, costUsd: '0.000175', bytesIn: audio.length });
  });

  it('denied and failed exchanges cost nothing', () => {
    const { sink, observe } = setup();
    observe(start({ decision: 'deny', requestBody: enc('{"text":"abc"}') })).end({ status: 403 });
    const o = observe(start({ requestBody: enc('{"text":"abc"}') }));
    o.end({ status: 502, error: 'upstream_unreachable' });
    expect(sink.spans.map((s) => [s.decision, s.status, s.costUsd, s.error])).toEqual([
      ['deny', 403, '0', ''],
      ['allow', 502, '0', 'upstream_unreachable'],
    ]);
  });

  it('never carries a credential even if one slips into the headers', () => {
    const { sink, observe } = setup();
    const secret = 'sk_live_SUPERSECRET';
    const o = observe(start({
      headers: { authorization: `Bearer ${secret}`, 'x-api-key': secret, cookie: `s=${secret}` },
      requestBody: enc('{"text":"hi"}'),
    }));
    o.responseStart(200, { 'set-cookie': `s=${secret}`, authorization: secret });
    o.end({ status: 200 });
    const json = JSON.stringify(sink.spans[0]);
    expect(json).not.toContain(secret);
    expect(json.toLowerCase()).not.toContain('authorization');
  });
});
