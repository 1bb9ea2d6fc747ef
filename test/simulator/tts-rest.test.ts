import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { parseWav, wavDurationSec } from '../../simulator/wav.ts';

const KEY = 'sk_test_tts';
let sim: SimulatorHandle;

beforeAll(async () => {
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: KEY, units: 2 }, { key: 'sk_one', units: 1 }] });
});
afterAll(() => sim.close());

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${sim.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const TEXT = 'Hello there, this sentence has forty-five ch.'; // 45 characters

describe('TTS sync', () => {
  it('returns a valid WAV whose duration follows the text, with the documented headers', async () => {
    const r = await post('/waves/v1/lightning-v3.1/get_speech', { text: TEXT, voice_id: 'magnus', output_format: 'wav', sample_rate: 24000, session_id: 'sess-1', request_id: 'req.42' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('audio/wav');
    expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers.get('x-session-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers.get('x-external-session-id')).toBe('sess-1');
    expect(r.headers.get('x-external-request-id')).toBe('req.42');
    const wav = Buffer.from(await r.arrayBuffer());
    const info = parseWav(wav, wav.length)!;
    expect(info.sampleRate).toBe(24000);
    expect(wavDurationSec(info)).toBeCloseTo(45 / 16, 1);
  });

  it('sizes every format as its encoding implies, same bytes for the same input', async () => {
    const sizes: Record<string, number> = {};
    for (const output_format of ['pcm', 'wav', 'ulaw', 'alaw', 'mp3']) {
      const r = await post('/api/v1/lightning-v3.1/get_speech', { text: 'sixteen chars ok', voice_id: 'sophia', output_format, sample_rate: 16000 });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('audio/wav');
      sizes[output_format] = (await r.arrayBuffer()).byteLength;
    }
    expect(sizes).toMatchObject({ pcm: 32000, wav: 32044, ulaw: 16000, alaw: 16000 });
    expect(sizes['mp3']).toBe(Math.ceil(16000 / 576) * 144);
    const a = await (await post('/waves/v1/tts', { text: 'same', voice_id: 'magnus', speed: 0.5 })).arrayBuffer();
    const b = await (await post('/waves/v1/tts', { text: 'same', voice_id: 'magnus', speed: 0.5, model: 'lightning_v3.1_pro' })).arrayBuffer();
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.byteLength).toBe(Math.round(44100 * (4 / 16) / 0.5) * 2); // default pcm at 44.1 kHz
  });
});

describe('TTS SSE', () => {
  it('streams ordered ~1 KB audio frames then the final done frame', async () => {
    const pcm = Buffer.from(await (await post('/waves/v1/lightning-v3.1/get_speech', { text: TEXT, voice_id: 'magnus', sample_rate: 8000 })).arrayBuffer());
    for (const path of ['/waves/v1/lightning-v3.1/stream', '/waves/v1/tts/live']) {
      const r = await post(path, { text: TEXT, voice_id: 'magnus', sample_rate: 8000 });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('text/event-stream');
      const frames = (await r.text()).split('\n\n');
      expect(frames.pop()).toBe('');
      expect(frames.at(-1)).toBe('data: {"status":"200","done":true}');
      const audio = frames.slice(0, -1).map((f) => {
        const [ev, data] = f.split('\n');
        expect(ev).toBe('event: audio');
        const d = JSON.parse(data!.slice(6)) as { audio: string; done: boolean; status: string };
        expect(d).toMatchObject({ done: false, status: '206' });
        return Buffer.from(d.audio, 'base64');
      });
      expect(audio.length).toBe(Math.ceil(pcm.length / 1024));
      expect(audio[0]!.length).toBe(1024);
      expect(Buffer.concat(audio).equals(pcm)).toBe(true);
    }
  });
});

describe('TTS errors', () => {
  it('answers 401 without a key and with a bad key', async () => {
    const none = await fetch(`${sim.url}/waves/v1/tts`, { method: 'POST', body: '{}' });
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ message: 'Unauthorized: No tokens provided' });
    const bad = await post('/waves/v1/tts', {}, { authorization: 'Bearer sk_nope' });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toEqual({ error: 'unauthorized' });
    const empty = await post('/waves/v1/tts', {}, { authorization: 'Bearer ' });
    expect(await empty.json()).toEqual({ message: 'Unauthorized: No tokens provided' });
    const basic = await post('/waves/v1/tts', {}, { authorization: 'Basic abc' });
    expect(await basic.json()).toEqual({ error: 'unauthorized' });
  });

  it('answers zod-style 400 arrays', async () => {
    const r = await post('/waves/v1/lightning-v3.1/get_speech', { voice_id: 'nobody', output_format: 'mulaw', speed: 0.2 });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const { error } = (await r.json()) as { error: Record<string, unknown>[] };
    expect(error).toContainEqual({ code: 'custom', path: ['voice_id'], message: 'Invalid Voice ID' });
    expect(error).toContainEqual(expect.objectContaining({ code: 'invalid_type', path: ['text'], message: 'Required' }));
    expect(error).toContainEqual(expect.objectContaining({ code: 'too_small', path: ['speed'], minimum: 0.5 }));
    const enumIssue = error.find((i) => i['code'] === 'invalid_enum_value')!;
    expect(Object.keys(enumIssue)).toEqual(['received', 'code', 'options', 'path', 'message']);
    expect(enumIssue).toMatchObject({ received: 'mulaw', options: ['wav', 'ulaw', 'alaw', 'pcm', 'mp3'], path: ['output_format'] });
  });

  it('answers 410 for retired models on every generation and 404 for unknown ones', async () => {
    for (const [path, body] of [
      ['/api/v1/lightning/get_speech', { text: 'x', voice_id: 'magnus' }],
      ['/api/v1/lightning-large/get_speech', { text: 'x', voice_id: 'magnus' }],
      ['/waves/v1/lightning-v2/stream', { text: 'x', voice_id: 'magnus' }],
      ['/waves/v1/tts', { text: 'x', voice_id: 'magnus', model: 'lightning_v2' }],
    ] as const) {
      const r = await post(path, body);
      expect(r.status).toBe(410);
      expect(await r.json()).toMatchObject({ status: 'error', error_code: 'MODEL_DEPRECATED', recommended_endpoint: expect.stringMatching(/^\/waves\/v1\/lightning-v3\.1\//) });
    }
    expect((await post('/waves/v1/lightning-v9/get_speech', { text: 'x', voice_id: 'magnus' })).status).toBe(404);
    expect((await post('/waves/v1/tts', { text: 'x', voice_id: 'magnus', model: 'nope' })).status).toBe(404);
    expect((await post('/waves/v1/nothing', {})).status).toBe(404);
  });

  it('answers 429 at once when every unit of the key is busy, and recovers', async () => {
    const slow = post('/waves/v1/tts', { text: 'hold the unit', voice_id: 'magnus' }, { authorization: 'Bearer sk_one', 'x-sim-delay-ms': '400' });
    await new Promise((r) => setTimeout(r, 100));
    const over = await post('/waves/v1/tts', { text: 'x', voice_id: 'magnus' }, { authorization: 'Bearer sk_one' });
    expect(over.status).toBe(429);
    expect(await over.json()).toEqual({ error: 'Rate limit exceeded. Please try again later.' });
    expect((await slow).status).toBe(200);
    expect((await post('/waves/v1/tts', { text: 'x', voice_id: 'magnus' }, { authorization: 'Bearer sk_one' })).status).toBe(200);
  });

  it('answers a scripted status with a JSON body', async () => {
    const r = await post('/waves/v1/lightning-v3.1/get_speech', { text: 'x', voice_id: 'magnus' }, { 'x-sim-status': '503' });
    expect(r.status).toBe(503);
    expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await r.json()).toHaveProperty('error');
    const limited = await post('/waves/v1/pulse/get_text', 'x', { 'x-sim-status': '429' });
    expect(limited.status).toBe(429);
    expect(await limited.json()).toEqual({ error: 'Rate limit exceeded. Please try again later.' });
  });
});

describe('health and recording', () => {
  it('serves health without auth and records what reached it', async () => {
    const r = await fetch(`${sim.url}/waves/v1/health?probe=1`, { headers: { 'x-probe': 'yes' } });
    expect(await r.json()).toEqual({ status: 'ok' });
    const last = sim.requests().at(-1)!;
    expect(last).toMatchObject({ method: 'GET', url: '/waves/v1/health?probe=1', upgrade: false });
    expect(last.headers['x-probe']).toBe('yes');
    expect(sim.requests().some((q) => q.headers['authorization'] === `Bearer ${KEY}`)).toBe(true);
  });
});

describe('realistic profile', () => {
  it('flushes SSE frames one by one instead of all at the end', async () => {
    const slow = await startSimulator({ port: 0, profile: 'realistic', firstAudioMs: 20, speedFactor: 10, accounts: [{ key: KEY, units: 1 }] });
    try {
      // 5 s of audio at 10× real time: frames trickle out over ~0.5 s
      const r = await fetch(`${slow.url}/waves/v1/lightning-v3.1/stream`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'x'.repeat(80), voice_id: 'magnus', sample_rate: 8000 }),
      });
      const reader = r.body!.getReader();
      const arrivals: { at: number; done: boolean }[] = [];
      let text = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
        arrivals.push({ at: performance.now(), done: text.includes('"done":true') });
      }
      const firstAudio = arrivals.find((a) => !a.done)!;
      const end = arrivals.at(-1)!;
      expect(end.done).toBe(true);
      expect(arrivals.length).toBeGreaterThan(3);
      expect(end.at - firstAudio.at).toBeGreaterThan(150);
    } finally {
      await slow.close();
    }
  });
});
