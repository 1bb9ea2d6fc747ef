import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { openWs, type WsProbe } from './ws-probe.ts';

const KEY = 'sk_ws';
let sim: SimulatorHandle;
let ws: string;

beforeAll(async () => {
  sim = await startSimulator({
    port: 0,
    profile: 'realistic',
    firstAudioMs: 5,
    speedFactor: 50,
    wsConnectionsPerUnit: 2,
    allowQueryToken: true,
    accounts: [{ key: KEY, units: 2 }, { key: 'sk_one', units: 1 }],
  });
  ws = sim.url.replace('http', 'ws');
});
afterAll(() => sim.close());

const auth = (key = KEY): Record<string, string> => ({ authorization: `Bearer ${key}` });

/** Reads frames up to and including the next `complete`. */
async function untilComplete(p: WsProbe): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (;;) {
    const f = await p.next();
    out.push(f);
    if (f['status'] === 'complete' || f['status'] === 'error') return out;
  }
}

function audioBytes(frames: Record<string, unknown>[]): number {
  return frames.filter((f) => f['status'] === 'chunk').reduce((n, f) => n + Buffer.from((f['data'] as { audio: string }).audio, 'base64').length, 0);
}

describe('TTS WebSocket', () => {
  it('serves three requests on one socket, each with its own request id', async () => {
    const p = await openWs(`${ws}/waves/v1/lightning-v3.1/get_speech/stream`, auth());
    const ids = new Set<unknown>();
    for (const [i, text] of ['First sentence here.', 'Second one.', 'And the third sentence.'].entries()) {
      p.ws.send(JSON.stringify({ text, voice_id: 'magnus', sample_rate: 16000, complete_backoff_ms: 20, request_id: `r${i}` }));
      const frames = await untilComplete(p);
      const last = frames.at(-1)!;
      expect(last['status']).toBe('complete');
      expect(frames.slice(0, -1).every((f) => f['status'] === 'chunk')).toBe(true);
      expect(new Set(frames.map((f) => f['request_id'])).size).toBe(1);
      expect(String(last['request_id'])).toMatch(/^task_/);
      expect(String(last['session_id'])).toMatch(/^ws_/);
      expect(last['external_request_id']).toBe(`r${i}`);
      expect(audioBytes(frames)).toBe(Math.round((16000 * text.length) / 16) * 2);
      ids.add(last['request_id']);
    }
    expect(ids.size).toBe(3);
    p.ws.close();
  });

  it('buffers `continue` text until `flush` and sends word timestamps', async () => {
    const p = await openWs(`${ws}/waves/v1/tts/live`, auth());
    const base = { voice_id: 'sophia', sample_rate: 8000, complete_backoff_ms: 20 };
    p.ws.send(JSON.stringify({ ...base, text: 'Hello ', continue: true }));
    p.ws.send(JSON.stringify({ ...base, text: 'brave new ', continue: true, word_timestamps: true }));
    p.ws.send(JSON.stringify({ text: 'world', flush: true, word_timestamps: true, complete_backoff_ms: 20 }));
    const frames = await untilComplete(p);
    expect(audioBytes(frames)).toBe(Math.round((8000 * 'Hello brave new world'.length) / 16) * 2);
    const words = frames.filter((f) => f['status'] === 'word_timestamp').map((f) => f['data'] as { word: string; start: number; end: number });
    expect(words.map((w) => w.word)).toEqual(['Hello', 'brave', 'new', 'world']);
    expect(words.every((w, i) => w.end > w.start && (i === 0 || w.start >= words[i - 1]!.end))).toBe(true);
    // an empty flush after a continued stream synthesises what was buffered
    p.ws.send(JSON.stringify({ ...base, text: 'tail end', continue: true }));
    p.ws.send(JSON.stringify({ text: '', flush: true, complete_backoff_ms: 20 }));
    expect(audioBytes(await untilComplete(p))).toBe(Math.round((8000 * 8) / 16) * 2);
    p.ws.close();
  });

  it('shares one complete between requests closer than complete_backoff_ms', async () => {
    const p = await openWs(`${ws}/waves/v1/tts/live`, auth());
    p.ws.send(JSON.stringify({ text: 'one', voice_id: 'magnus', sample_rate: 8000, complete_backoff_ms: 300 }));
    p.ws.send(JSON.stringify({ text: 'two', voice_id: 'magnus', sample_rate: 8000, complete_backoff_ms: 300 }));
    const frames = await untilComplete(p);
    const requests = [...new Set(frames.filter((f) => f['status'] === 'chunk').map((f) => f['request_id']))];
    expect(requests).toHaveLength(2);
    expect(frames.filter((f) => f['status'] === 'complete')).toHaveLength(1);
    expect(frames.at(-1)!['request_id']).toBe(requests[1]);
    p.ws.close();
  });

  it('sends an error frame on bad input and keeps the socket open', async () => {
    const p = await openWs(`${ws}/waves/v1/tts/live`, auth());
    p.ws.send('not json');
    const e1 = await p.next();
    expect(e1).toMatchObject({ status: 'error' });
    expect(e1['message']).toBe(e1['error']);
    p.ws.send(JSON.stringify({ text: 'x', voice_id: 'nobody' }));
    expect(String((await p.next())['message'])).toContain('Invalid Voice ID');
    p.ws.send(JSON.stringify({ text: 'fine', voice_id: 'magnus', sample_rate: 8000, complete_backoff_ms: 0 }));
    expect((await untilComplete(p)).at(-1)!['status']).toBe('complete');
    p.ws.close();
  });

  it('answers a request over the active-synthesis limit with an error frame, socket stays open', async () => {
    const a = await openWs(`${ws}/waves/v1/tts/live`, auth('sk_one'));
    const b = await openWs(`${ws}/waves/v1/tts/live`, auth('sk_one'));
    // 60 s of 44.1 kHz audio at 50× takes ~1.2 s: the key's only unit stays busy meanwhile
    a.ws.send(JSON.stringify({ text: 'x'.repeat(960), voice_id: 'magnus', complete_backoff_ms: 0 }));
    expect((await a.next())['status']).toBe('chunk');
    b.ws.send(JSON.stringify({ text: 'hi', voice_id: 'magnus', request_id: 'over', complete_backoff_ms: 0 }));
    const err = await b.next();
    expect(err).toMatchObject({ status: 'error', message: 'Rate limit exceeded. Please try again later.', error: 'Rate limit exceeded. Please try again later.', external_request_id: 'over' });
    expect(b.ws.readyState).toBe(b.ws.OPEN);
    a.ws.close();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50));
    b.ws.send(JSON.stringify({ text: 'hi', voice_id: 'magnus', sample_rate: 8000, complete_backoff_ms: 0 }));
    expect((await untilComplete(b)).at(-1)!['status']).toBe('complete');
    b.ws.close();
  });

  it('rejects upgrades over the connection cap (429), without a key (401) and for retired models (410)', async () => {
    const open = [await openWs(`${ws}/waves/v1/tts/live`, auth('sk_one')), await openWs(`${ws}/waves/v1/tts/live`, auth('sk_one'))];
    await expect(openWs(`${ws}/waves/v1/tts/live`, auth('sk_one'))).rejects.toMatchObject({ status: 429 });
    for (const o of open) o.ws.close();
    await Promise.all(open.map((o) => o.closed));
    await expect(openWs(`${ws}/waves/v1/tts/live`)).rejects.toMatchObject({ status: 401, body: '{"message":"Unauthorized: No tokens provided"}' });
    await expect(openWs(`${ws}/waves/v1/tts/live`, auth('sk_bad'))).rejects.toMatchObject({ status: 401, body: '{"error":"unauthorized"}' });
    await expect(openWs(`${ws}/api/v1/lightning-v2/get_speech/stream`, auth())).rejects.toMatchObject({ status: 410 });
    await expect(openWs(`${ws}/waves/v1/tts/live`, { ...auth(), 'x-sim-status': '503' })).rejects.toMatchObject({ status: 503 });
    // ?token= is accepted here because this instance enables it
    const q = await openWs(`${ws}/waves/v1/tts/live?token=${KEY}`);
    q.ws.close();
    expect(sim.requests().filter((r) => r.upgrade).length).toBeGreaterThan(5);
  });

  it('closes an idle connection after ?timeout= seconds with an error frame', async () => {
    const p = await openWs(`${ws}/waves/v1/tts/live?timeout=0.2`, auth());
    const f = await p.next(3000);
    expect(f).toMatchObject({ status: 'error', message: 'Connection timed out after 0.2 seconds of inactivity' });
    expect(f['error']).toBe(f['message']);
    expect((await p.closed).code).toBe(1000);
  });
});

describe('query token off by default', () => {
  it('ignores ?token= unless enabled', async () => {
    const strict = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: KEY, units: 1 }] });
    try {
      await expect(openWs(`${strict.url.replace('http', 'ws')}/waves/v1/tts/live?token=${KEY}`)).rejects.toMatchObject({ status: 401 });
    } finally {
      await strict.close();
    }
  });
});
