import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { openWs, type WsProbe } from './ws-probe.ts';
import { synthesizePcm } from '../../simulator/synth.ts';
import { WAVE_FORMAT, wavHeader } from '../../simulator/wav.ts';

const KEY = 'sk_stt';
let sim: SimulatorHandle;
let ws: string;

beforeAll(async () => {
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: KEY, units: 2 }, { key: 'sk_one', units: 1 }] });
  ws = sim.url.replace('http', 'ws');
});
afterAll(() => sim.close());

const auth = (key = KEY): Record<string, string> => ({ authorization: `Bearer ${key}` });

function post(path: string, body: Buffer | string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${sim.url}${path}`, { method: 'POST', headers: { ...auth(), ...headers }, body });
}

/** `seconds` of deterministic 16-bit speech at `rate`, optionally with a WAV header. */
function audio(seconds: number, rate: number, wav: boolean): Buffer {
  const pcm = synthesizePcm('x'.repeat(Math.round(seconds * 16)), rate, 1);
  return wav ? Buffer.concat([wavHeader(pcm.length, rate, 16, WAVE_FORMAT.pcm), pcm]) : pcm;
}

describe('Pulse REST', () => {
  it('reads the duration from a WAV header on every route', async () => {
    const body = audio(3, 24000, true);
    for (const path of ['/waves/v1/pulse/get_text?language=en', '/api/v1/pulse/get_text', '/waves/v1/stt?model=pulse', '/waves/v1/stt/?model=pulse']) {
      const r = await post(path, body, { 'content-type': 'audio/wav' });
      expect(r.status).toBe(200);
      const j = (await r.json()) as { status: string; transcription: string; metadata: { duration: number; fileSize: number } };
      expect(j.status).toBe('success');
      expect(j.metadata).toEqual({ duration: 3, fileSize: body.length });
      expect(j.transcription.split(' ')).toHaveLength(9);
    }
  });

  it('reads raw PCM by encoding and sample_rate, with deterministic words', async () => {
    const body = audio(2, 8000, false);
    const r = await post('/waves/v1/pulse/get_text?encoding=linear16&sample_rate=8000&word_timestamps=true', body, { 'content-type': 'application/octet-stream' });
    const j = (await r.json()) as { transcription: string; words: { word: string; start: number; end: number; confidence: number }[]; metadata: { duration: number } };
    expect(j.metadata.duration).toBe(2);
    expect(j.words.map((w) => w.word).join(' ')).toBe(j.transcription);
    expect(j.words.at(-1)!.end).toBeLessThanOrEqual(2);
    const again = (await (await post('/waves/v1/pulse/get_text?encoding=linear16&sample_rate=8000', body, {})).json()) as { transcription: string };
    expect(again.transcription).toBe(j.transcription);
    const defaults = (await (await post('/waves/v1/pulse/get_text', body, {})).json()) as { metadata: { duration: number } };
    expect(defaults.metadata.duration).toBe(1); // linear16 at 16 kHz by default
    const mulaw = (await (await post('/waves/v1/pulse/get_text?encoding=mulaw&sample_rate=8000', Buffer.alloc(4000), {})).json()) as { metadata: { duration: number } };
    expect(mulaw.metadata.duration).toBe(0.5);
  });

  it('answers a URL body with a fixed-length transcript and bad audio with the documented error', async () => {
    const r = await post('/waves/v1/pulse/get_text', JSON.stringify({ url: 'https://example.com/a.wav' }), { 'content-type': 'application/json' });
    expect(((await r.json()) as { metadata: { duration: number } }).metadata.duration).toBe(5.28);
    const bad = await post('/waves/v1/pulse/get_text', Buffer.from('RIFF\x10\0\0\0WAVEjunkjunk'), { 'content-type': 'audio/wav' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ status: 'error', message: 'Error handling audio data', errors: expect.stringMatching(/^Invalid file format/) });
    expect((await post('/waves/v1/stt?model=whisper', audio(1, 16000, true), {})).status).toBe(404);
    const anon = await fetch(`${sim.url}/waves/v1/pulse/get_text`, { method: 'POST', body: 'x' });
    expect(anon.status).toBe(401);
  });

  it('redacts names and CVVs when asked', async () => {
    const r = await post('/waves/v1/pulse/get_text?redact_pii=true&redact_pci=true', audio(2, 16000, true), {});
    const j = (await r.json()) as { transcription: string; redacted_entities: string[] };
    expect(j.transcription).toContain('[FIRSTNAME_1]');
    expect(j.transcription).toContain('[CREDITCARDCVV_1]');
    expect(j.redacted_entities).toEqual(['[FIRSTNAME_1]', '[CREDITCARDCVV_1]']);
  });
});

/** Reads frames until one with is_final (returns the partials seen before it too). */
async function untilFinal(p: WsProbe): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (;;) {
    const f = await p.next();
    out.push(f);
    if (f['is_final'] === true) return out;
  }
}

describe('Pulse streaming', () => {
  it('sends partials, a final per second of audio, a final on finalize and is_last on close_stream', async () => {
    const p = await openWs(`${ws}/waves/v1/stt/live?model=pulse&language=en&sample_rate=16000&word_timestamps=true`, auth());
    const pcm = audio(1.5, 16000, false);
    for (let o = 0; o < pcm.length; o += 3200) p.ws.send(pcm.subarray(o, o + 3200)); // 100 ms frames
    const first = await untilFinal(p);
    expect(first.slice(0, -1).length).toBeGreaterThanOrEqual(3);
    expect(first.slice(0, -1).every((f) => f['is_final'] === false && f['type'] === 'transcription')).toBe(true);
    const final = first.at(-1)!;
    expect(final).toMatchObject({ type: 'transcription', is_final: true, is_last: false, language: 'en' });
    expect(String(final['transcript']).split(' ')).toHaveLength(3);
    expect(Array.isArray(final['words'])).toBe(true);
    p.ws.send(JSON.stringify({ type: 'finalize' }));
    const second = (await untilFinal(p)).at(-1)!;
    expect(String(second['transcript']).length).toBeGreaterThan(0);
    expect((second['words'] as { start: number }[])[0]!.start).toBeGreaterThanOrEqual(1);
    p.ws.send(JSON.stringify({ type: 'close_stream' }));
    expect(await p.next()).toMatchObject({ is_final: true, is_last: true });
    expect((await p.closed).code).toBe(1000);
  });

  it('redacts finalized transcripts and lists the entities; `end` also finishes', async () => {
    const p = await openWs(`${ws}/api/v1/pulse/get_text?redact_pii=true&redact_pci=true`, auth());
    p.ws.send(audio(1, 16000, false));
    const final = (await untilFinal(p)).at(-1)!;
    expect(final['transcript']).toMatch(/\[FIRSTNAME_1\].*\[CREDITCARDCVV_1\]/);
    expect(final['redacted_entities']).toEqual(['[FIRSTNAME_1]', '[CREDITCARDCVV_1]']);
    p.ws.send(audio(1, 16000, false));
    expect((await untilFinal(p)).at(-1)!['redacted_entities']).toEqual(['[FIRSTNAME_2]', '[CREDITCARDCVV_2]']);
    p.ws.send(JSON.stringify({ type: 'end' }));
    expect(await p.next()).toMatchObject({ is_last: true });
    expect((await p.closed).code).toBe(1000);
  });

  it('closes sockets over the key’s units with 1008 and rejects bad upgrades', async () => {
    const a = await openWs(`${ws}/waves/v1/stt/live`, auth('sk_one'));
    const b = await openWs(`${ws}/waves/v1/stt/live`, auth('sk_one'));
    expect((await b.closed).code).toBe(1008);
    a.ws.close();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50)); // the server frees the unit on its own close event
    const c = await openWs(`${ws}/waves/v1/pulse/get_text`, auth('sk_one'));
    c.ws.send(JSON.stringify({ type: 'close_stream' }));
    expect((await c.closed).code).toBe(1000);
    await expect(openWs(`${ws}/waves/v1/stt/live`)).rejects.toMatchObject({ status: 401 });
    await expect(openWs(`${ws}/waves/v1/stt/live?encoding=flac`, auth())).rejects.toMatchObject({ status: 400 });
    await expect(openWs(`${ws}/waves/v1/pulse-pro/get_text`, auth())).rejects.toMatchObject({ status: 404 });
  });
});
