import { readTtsBody } from '../decision/tts-body.ts';
import { describe, expect, it } from 'vitest';
import { Decimal, sumDecimals } from './decimal.ts';
import {
  countCodePoints, meterSttRest, parseWavHeader, pcmSeconds, sseAudioDetector, sttFormatFromPath,
  ttsCharactersFromWsMessage, wavSeconds,
} from './metering.ts';
import { costUsd } from './pricing.ts';
import { decodeSpan, encodeSpan, isErrorSpan, subjectToken, traceContext } from './span.ts';
import { makeSpan, wav } from '../../../test/usage/helpers.ts';

describe('Decimal', () => {
  it('adds and multiplies exactly where floats drift', () => {
    expect(Decimal.parse('0.1').add(Decimal.parse('0.2')).toString()).toBe('0.3');
    expect(sumDecimals(Array(10).fill('0.1'))).toBe('1');
    expect(Decimal.fromInteger(45).mul(Decimal.parse('0.0195')).divInt(1000).toString()).toBe('0.0008775');
  });
  it('rounds half away from zero at 12 places and rejects garbage', () => {
    expect(Decimal.parse('0.0000000000005').toString()).toBe('0.000000000001');
    expect(Decimal.fromInteger(1).divInt(3).toString()).toBe('0.333333333333');
    expect(Decimal.fromInteger(2).divInt(3).toString()).toBe('0.666666666667');
    expect(() => Decimal.parse('1e3')).toThrow(RangeError);
  });
});

describe('pricing', () => {
  const price = { perThousandChars: '0.0195', perMinute: '0.0035', perMinuteStreaming: '0.006' };
  it('prices characters per thousand', () => {
    expect(costUsd(price, 'rest', { characters: 1000 })).toBe('0.0195');
    expect(costUsd(price, 'sse', { characters: 1 })).toBe('0.0000195');
  });
  it('prices audio per minute, streaming rate on WebSockets', () => {
    expect(costUsd(price, 'rest', { audioSeconds: 60 })).toBe('0.0035');
    expect(costUsd(price, 'websocket', { audioSeconds: 30 })).toBe('0.003');
    expect(costUsd({ perMinute: '0.0035' }, 'websocket', { audioSeconds: 60 })).toBe('0.0035');
    expect(costUsd(undefined, 'rest', { characters: 5 })).toBe('0');
  });
});

describe('metering', () => {
  it('counts Unicode code points, not UTF-16 units', () => {
    expect(countCodePoints('héllo 👋')).toBe(7);
    expect(readTtsBody(new TextEncoder().encode(JSON.stringify({ text: 'नमस्ते', voice_id: 'x' }))).characters).toBe(6);
    expect(readTtsBody(new TextEncoder().encode('not json')).characters).toBeUndefined();
  });
  it('ignores whitespace-only WebSocket keepalives and flushes', () => {
    expect(ttsCharactersFromWsMessage(JSON.stringify({ text: 'Hello there.' }))).toBe(12);
    expect(ttsCharactersFromWsMessage(JSON.stringify({ text: ' ' }))).toBe(0);
    expect(ttsCharactersFromWsMessage(JSON.stringify({ text: '', flush: true }))).toBe(0);
  });
  it('reads WAV durations, walking past extra chunks', () => {
    const w = wav(16000, 16, 64000, true);
    const info = parseWavHeader(w)!;
    expect(info.sampleRate).toBe(16000);
    expect(wavSeconds(info, w.length)).toBe(2);
    expect(meterSttRest(w.subarray(0, 4096), w.length, '/pulse/get_text')).toEqual({ seconds: 2, estimated: false });
  });
  it('meters raw PCM from the query encoding and rate', () => {
    expect(sttFormatFromPath('/x?encoding=mulaw&sample_rate=8000')).toMatchObject({ bytesPerSample: 1, sampleRate: 8000 });
    expect(sttFormatFromPath('/x')).toMatchObject({ bytesPerSample: 2, sampleRate: 16000, explicit: false });
    expect(pcmSeconds(96000, 48000, 2)).toBe(1);
    expect(meterSttRest(new Uint8Array(32000), 32000, '/x?encoding=linear32&sample_rate=16000')).toEqual({ seconds: 0.5, estimated: false });
  });
  it('falls back to the response duration, marked estimated, for compressed uploads', () => {
    const res = Buffer.from(JSON.stringify({ status: 'success', metadata: { duration: 5.28 } }));
    expect(meterSttRest(Buffer.from('ID3...mp3'), 9, '/pulse/get_text', res)).toEqual({ seconds: 5.28, estimated: true });
  });
  it('finds the first SSE audio frame across chunk boundaries', () => {
    const d = sseAudioDetector();
    expect(d(Buffer.from(': comment\n\nevent: au'))).toBe(false);
    expect(d(Buffer.from('dio\ndata: {}\n\n'))).toBe(true);
    expect(d(Buffer.from('event: audio\n'))).toBe(false);
  });
});

describe('span', () => {
  it('continues a valid traceparent and rejects invalid ones', () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(traceContext(tp)).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' });
    for (const bad of ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'garbage', undefined]) {
      const t = traceContext(bad);
      expect(t.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(t.traceId).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(t.parentSpanId).toBe('');
    }
  });
  it('round-trips through the JSON wire form and accepts 64-bit strings', () => {
    const s = makeSpan({ audioSeconds: 1.5 });
    expect(decodeSpan(encodeSpan(s))).toEqual(s);
    const wire = JSON.parse(new TextDecoder().decode(encodeSpan(s)));
    wire.bytesIn = '12345';
    delete wire.error;
    expect(decodeSpan(JSON.stringify(wire))).toMatchObject({ bytesIn: 12345, error: '' });
    expect(() => decodeSpan('{"schema":"other"}')).toThrow(/invalid span/);
  });
  it('classifies errors and makes subject-safe tokens', () => {
    expect(isErrorSpan(makeSpan())).toBe(false);
    expect(isErrorSpan(makeSpan({ status: 429 }))).toBe(true);
    expect(isErrorSpan(makeSpan({ status: 101, closeCode: 1011 }))).toBe(true);
    expect(isErrorSpan(makeSpan({ status: 101, closeCode: 1000 }))).toBe(false);
    expect(subjectToken('lightning-v3.1')).toBe('lightning-v3_1');
    expect(subjectToken('a b>*')).toBe('a_b__');
  });
});
