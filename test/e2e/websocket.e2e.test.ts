/**
 * Lightning and Pulse WebSockets through the edge with the `ws` client, the real decision and the
 * simulator, in both authz modes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AUTHZ_MODES, startStack, type Stack } from './stack.ts';
import { ResponseLedger, upstreamRequestsContaining } from './wire.ts';

interface TtsFrame {
  status: string;
  request_id?: string;
  external_request_id?: string;
  session_id?: string;
  data?: { audio?: string };
  message?: string;
}

interface SttFrame {
  type: string;
  transcript: string;
  is_final: boolean;
  is_last: boolean;
}

/** Opens a socket, recording the handshake answer in `ledger`; rejects on a refused upgrade. */
function open(url: string, ledger: ResponseLedger, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, perMessageDeflate: false });
    ws.once('upgrade', (res) => ledger.add(`upgrade ${url.split('?')[0]}`, res.headers));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Sends one TTS request and collects its frames up to and including `complete` (or an error). */
function synthesize(ws: WebSocket, ledger: ResponseLedger, request: Record<string, unknown>): Promise<TtsFrame[]> {
  return new Promise((resolve, reject) => {
    const frames: TtsFrame[] = [];
    const onMessage = (data: WebSocket.RawData, isBinary: boolean) => {
      const text = data.toString();
      ledger.add('tts frame', undefined, text);
      if (isBinary) return reject(new Error('Lightning sends JSON text frames only'));
      const frame = JSON.parse(text) as TtsFrame;
      frames.push(frame);
      if (frame.status === 'complete' || frame.status === 'error') {
        ws.off('message', onMessage);
        resolve(frames);
      }
    };
    ws.on('message', onMessage);
    ws.once('close', (code) => reject(new Error(`closed (${code}) before complete`)));
    ws.send(JSON.stringify(request));
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

/** 16-bit mono PCM of a tone, `seconds` long at 16 kHz. */
function tone(seconds: number): Buffer {
  const samples = Math.round(16000 * seconds);
  const pcm = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) pcm.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 16000)), i * 2);
  return pcm;
}

describe.each(AUTHZ_MODES)('WebSockets through the edge (authz %s)', (mode) => {
  let stack: Stack;
  const ledger = new ResponseLedger();

  beforeAll(async () => {
    stack = await startStack(mode);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it.each(['query', 'header'] as const)('runs three TTS requests on one socket, token in the %s', async (via) => {
    const before = stack.sim.requests().length;
    const path = '/smallest/waves/v1/tts/live';
    const ws =
      via === 'query'
        ? await open(`${stack.wsUrl}${path}?token=${stack.tokens.alice}`, ledger)
        : await open(`${stack.wsUrl}${path}`, ledger, { authorization: `Bearer ${stack.tokens.alice}` });
    const texts = ['First sentence on this socket.', 'A second one, a little longer than the first.', 'And the third.'];
    const serverIds: string[] = [];
    for (const [i, text] of texts.entries()) {
      const frames = await synthesize(ws, ledger, { text, voice_id: 'magnus', sample_rate: 16000, complete_backoff_ms: 0, request_id: `${via}-${i}` });
      const statuses = frames.map((f) => f.status);
      expect(statuses.at(-1)).toBe('complete');
      expect(statuses.slice(0, -1).length).toBeGreaterThan(0);
      expect(statuses.slice(0, -1).every((s) => s === 'chunk')).toBe(true);
      expect(frames.every((f) => f.external_request_id === `${via}-${i}`)).toBe(true);
      const ids = new Set(frames.map((f) => f.request_id));
      expect(ids.size).toBe(1);
      serverIds.push([...ids][0]!);
    }
    expect(new Set(serverIds).size).toBe(3);
    expect(serverIds.every((id) => id.startsWith('task_'))).toBe(true);

    const done = closed(ws);
    ws.close(1000, 'bye');
    expect((await done).code).toBe(1000);

    const upgrades = stack.sim.requests().slice(before).filter((r) => r.upgrade);
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0]!.url).toBe('/waves/v1/tts/live');
    expect(upgrades[0]!.headers['authorization']).toBe(`Bearer ${stack.keys.tts}`);
  });

  it('transcribes binary PCM: partials, finals, then is_last on close_stream and a 1000 close', async () => {
    const before = stack.sim.requests().length;
    const ws = await open(`${stack.wsUrl}/smallest/waves/v1/pulse/get_text?language=en&encoding=linear16&sample_rate=16000`, ledger, {
      authorization: `Bearer ${stack.tokens.bob}`,
    });
    const frames: SttFrame[] = [];
    const nonBinary: boolean[] = [];
    ws.on('message', (data, isBinary) => {
      nonBinary.push(!isBinary);
      ledger.add('stt frame', undefined, data.toString());
      frames.push(JSON.parse(data.toString()) as SttFrame);
    });
    const done = closed(ws);
    const audio = tone(2.5);
    for (let at = 0; at < audio.length; at += 4096) ws.send(audio.subarray(at, at + 4096), { binary: true });
    ws.send(JSON.stringify({ type: 'close_stream' }));
    const close = await done;

    expect(close.code).toBe(1000);
    expect(nonBinary.every(Boolean)).toBe(true);
    expect(frames.every((f) => f.type === 'transcription')).toBe(true);
    expect(frames.filter((f) => !f.is_final).length).toBeGreaterThan(0);
    const finals = frames.filter((f) => f.is_final);
    expect(finals.length).toBeGreaterThanOrEqual(2);
    expect(finals.every((f) => f.transcript.length > 0)).toBe(true);
    const last = frames.at(-1)!;
    expect(last).toMatchObject({ is_final: true, is_last: true });
    expect(frames.filter((f) => f.is_last)).toHaveLength(1);

    const upgrades = stack.sim.requests().slice(before).filter((r) => r.upgrade);
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0]!.url).toBe('/waves/v1/pulse/get_text?language=en&encoding=linear16&sample_rate=16000');
    expect(upgrades[0]!.headers['authorization']).toBe(`Bearer ${stack.keys.stt}`);
  });

  it('refuses a TTS upgrade for bob (pulse only) before the simulator sees it', async () => {
    const before = stack.sim.requests().length;
    await expect(open(`${stack.wsUrl}/smallest/waves/v1/tts/live?token=${stack.tokens.bob}`, ledger)).rejects.toThrow('upgrade refused: 403');
    expect(stack.sim.requests().length).toBe(before);
  });

  it('never showed a provider key to a client, nor a caller token to the simulator', () => {
    expect(ledger.size).toBeGreaterThan(10);
    expect(ledger.containing(stack.keys.tts)).toEqual([]);
    expect(ledger.containing(stack.keys.stt)).toEqual([]);
    expect(upstreamRequestsContaining(stack.sim.requests(), Object.values(stack.tokens))).toEqual([]);
  });
});
