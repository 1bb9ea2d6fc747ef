import { describe, expect, it } from 'vitest';
import type { DecisionMetadata } from '../decision/types.ts';
import type { Exchange } from '../exchange/exchange.ts';
import { createUsageObserverFactory, MAX_KEPT_RESPONSE, WAV_HEAD_BYTES } from './usage-observer.ts';
import { allowWith, denyWith, MemorySink, testExchange, testSnapshot, wav } from '../../../test/usage/helpers.ts';

const enc = (s: string) => new TextEncoder().encode(s);

const TTS: DecisionMetadata = {
  user: 'alice', teams: 'ops,voice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts',
  account: 'smallest-tts', route_kind: 'rest', endpoint: 'tts.sync', config_version: 7,
};
const STT: DecisionMetadata = { user: 'bob', provider: 'smallest', model: 'pulse', model_type: 'stt', account: 'smallest-stt' };

function setup() {
  const sink = new MemorySink();
  const observe = createUsageObserverFactory({ sink });
  const open = (x: Partial<Exchange>, md: DecisionMetadata = TTS, deny = false) => observe(testExchange(x), deny ? denyWith(md) : allowWith(md));
  return { sink, open };
}

describe('edge usage observer', () => {
  it('REST TTS: characters the decision counted, cost, ids, provider request id, exactly one span', () => {
    const { sink, open } = setup();
    const body = enc(JSON.stringify({ text: 'Hello, wörld 👋', voice_id: 'magnus' }));
    const o = open({ headers: { traceparent: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'] } }, { ...TTS, characters: 14 });
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

  it('REST TTS whose body the decision could not count: body bytes as an upper bound, estimated', () => {
    const { sink, open } = setup();
    const o = open({});
    o.requestChunk(new Uint8Array(2000));
    o.responseStart(200, {});
    o.end({ status: 200 });
    expect(sink.spans[0]).toMatchObject({ characters: 2000, estimated: true, costUsd: '0.039' });
  });

  it('SSE TTS: first audio frame timing', () => {
    const { sink, open } = setup();
    const o = open({ routeKind: 'sse' }, { ...TTS, route_kind: 'sse', endpoint: 'tts.sse', characters: 10 });
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
    const { sink, open } = setup();
    const o = open({ method: 'GET', routeKind: 'websocket', upgrade: true, pathWithQuery: '/smallest/waves/v1/tts/live' }, { ...TTS, route_kind: 'websocket', endpoint: 'tts.unified.ws' });
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
    const { sink, open } = setup();
    const path = '/smallest/waves/v1/stt/live?model=pulse&sample_rate=8000&encoding=linear16';
    const o = open({ method: 'GET', routeKind: 'websocket', upgrade: true, pathWithQuery: path }, { ...STT, route_kind: 'websocket', endpoint: 'stt.unified.ws' });
    o.responseStart(101, {});
    for (let i = 0; i < 30; i++) o.clientMessage(new Uint8Array(3200), true); // 96,000 B = 6 s at 8 kHz × 2 B
    o.clientMessage(enc('{"type":"close_stream"}'), false);
    o.upstreamMessage(enc(JSON.stringify({ type: 'transcription', transcript: 'hi', is_final: true })), false);
    o.end({ status: 101, closeCode: 1000 });
    const s = sink.spans[0]!;
    expect(s).toMatchObject({ audioSeconds: 6, costUsd: '0.0006', teams: [], modelType: 'stt', estimated: false });
    expect(s.firstTranscriptMs).toBeDefined();
  });

  it('REST STT: seconds from the WAV header, and only the header is kept', () => {
    const { sink, open } = setup();
    const audio = wav(16000, 16, 32000 * 3);
    const o = open({ pathWithQuery: '/smallest/waves/v1/pulse/get_text?language=en' }, { ...STT, route_kind: 'rest', endpoint: 'stt.rest' });
    o.requestChunk(audio.subarray(0, 1000));
    o.requestChunk(audio.subarray(1000));
    o.responseStart(200, {});
    o.responseChunk(enc('{"status":"success","transcription":"x","metadata":{"duration":99}}'));
    o.end({ status: 200 });
    expect(sink.spans[0]).toMatchObject({ audioSeconds: 3, estimated: false, costUsd: '0.000175', bytesIn: audio.length });
    expect(WAV_HEAD_BYTES).toBeLessThanOrEqual(16 << 10);
  });

  it('REST STT of a compressed upload: the provider duration, from a bounded response', () => {
    const { sink, open } = setup();
    const o = open({ pathWithQuery: '/smallest/waves/v1/pulse/get_text' }, { ...STT, route_kind: 'rest', endpoint: 'stt.rest' });
    o.requestChunk(enc('ID3 not a wav header'));
    o.responseStart(200, {});
    o.responseChunk(enc('{"status":"success","transcription":"x","metadata":{"duration":12}}'));
    o.end({ status: 200 });
    expect(sink.spans[0]).toMatchObject({ audioSeconds: 12, estimated: true, costUsd: '0.0007' });
    expect(MAX_KEPT_RESPONSE).toBeLessThanOrEqual(256 << 10);
  });

  it('prices with the snapshot the exchange arrived with', () => {
    const { sink, open } = setup();
    const base = testSnapshot();
    const tts = base.models.get('smallest')!.get('lightning-v3.1')!;
    const dearer = { ...tts, accounts: tts.accounts.map((a) => ({ ...a, price: { perThousandChars: '1' } })) };
    const snapshot = { ...base, version: 8, models: new Map([['smallest', new Map([['lightning-v3.1', dearer]])]]) };
    const o = open({ snapshot }, { ...TTS, characters: 1000, config_version: 8 });
    o.end({ status: 200 });
    expect(sink.spans[0]).toMatchObject({ costUsd: '1', configVersion: 8 });
  });

  it('denied and failed exchanges cost nothing', () => {
    const { sink, open } = setup();
    open({}, { ...TTS, characters: 3 }, true).end({ status: 403 });
    open({}, { ...TTS, characters: 3 }).end({ status: 502, error: 'upstream_unreachable' });
    expect(sink.spans.map((s) => [s.decision, s.status, s.costUsd, s.error])).toEqual([
      ['deny', 403, '0', ''],
      ['allow', 502, '0', 'upstream_unreachable'],
    ]);
  });
});

describe('billing of cut exchanges: one rule for every route kind', () => {
  // The provider answered 2xx/101, so it served (and charges for) the work, however it ended.
  const cuts: Array<[string, DecisionMetadata, Partial<Exchange>, string]> = [
    ['REST cut by the upstream mid-body', { ...TTS, characters: 100 }, {}, 'upstream_reset'],
    ['REST cut by a gateway timeout mid-body', { ...TTS, characters: 100 }, {}, 'upstream_timeout'],
    ['SSE the client walked away from', { ...TTS, route_kind: 'sse', endpoint: 'tts.sse', characters: 100 }, { routeKind: 'sse' }, 'client_aborted'],
  ];
  for (const [name, md, x, error] of cuts) {
    it(`${name}: billed for the characters, the error recorded`, () => {
      const { sink, open } = setup();
      const o = open(x, md);
      o.responseStart(200, { 'content-type': 'audio/wav' });
      o.responseChunk(new Uint8Array(10));
      o.end({ status: 200, error });
      expect(sink.spans[0]).toMatchObject({ status: 200, error, characters: 100, costUsd: '0.00195' });
    });
  }

  it('a TTS WebSocket cut by the upstream is billed the same way', () => {
    const { sink, open } = setup();
    const o = open({ routeKind: 'websocket', method: 'GET', pathWithQuery: '/smallest/waves/v1/lightning-v3.1/get_speech/stream' }, { ...TTS, route_kind: 'websocket', endpoint: 'tts.ws' });
    o.responseStart(101, {});
    o.clientMessage(enc(JSON.stringify({ text: 'x'.repeat(100) })), false);
    o.end({ status: 101, closeCode: 1006, error: 'upstream_reset' });
    expect(sink.spans[0]).toMatchObject({ status: 101, error: 'upstream_reset', costUsd: '0.00195' });
  });

  it('nothing answered, nothing billed: a 504 before the head, a client gone before the head', () => {
    for (const [status, error] of [[504, 'upstream_timeout'], [0, 'client_aborted'], [502, 'upstream_unreachable']] as const) {
      const { sink, open } = setup();
      const o = open({}, { ...TTS, characters: 100 });
      o.end({ status, error });
      expect(sink.spans[0]).toMatchObject({ status, error, costUsd: '0' });
    }
  });
});
