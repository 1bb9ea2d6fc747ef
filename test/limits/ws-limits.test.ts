/**
 * Limits on WebSockets through the real edge, decision and simulator: TTS connection slots
 * (units × ws_per_unit) refused with 429 before the upgrade, syntheses beyond the units refused
 * with a provider-shaped error frame on a socket that stays open (and never forwarded), STT
 * sockets holding a unit until they close.
 */
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { closed, opened, until } from '../edge/helpers.ts';
import { startLimitsStack, type LimitsStack } from './stack.ts';

let stack: LimitsStack | undefined;
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  await stack?.close();
  stack = undefined;
});

function connect(path: string, token: string): WebSocket {
  const ws = new WebSocket(`${stack!.wsUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  ws.on('error', () => {});
  sockets.push(ws);
  return ws;
}

/** The status and JSON body of a refused upgrade. */
function refusedUpgrade(ws: WebSocket): Promise<{ status: number; retryAfter: string | undefined; body: { error: { code: string; limit: string } } }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('upgrade was accepted')));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: res.headers['retry-after'] as string | undefined,
          body: JSON.parse(Buffer.concat(chunks).toString()) as { error: { code: string; limit: string } },
        }),
      );
    });
  });
}

/** Collects the JSON frames a socket receives. */
function frames(ws: WebSocket): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  ws.on('message', (d) => out.push(JSON.parse(d.toString()) as Record<string, unknown>));
  return out;
}

const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';
const STT = '/smallest/waves/v1/pulse/get_text?language=en';
const upgradesSeen = (path: string) => stack!.sim.requests().filter((r) => r.upgrade && r.url.startsWith(path)).length;

describe('WebSocket limits', () => {
  it('allows units × ws_per_unit TTS sockets and refuses the next with 429 before the upgrade', async () => {
    stack = await startLimitsStack({ concurrency: 1, wsPerUnit: 2 });
    const alice = await stack.token('alice', ['voice']);
    const first = connect(TTS, alice);
    const second = connect(TTS, alice);
    await Promise.all([opened(first), opened(second)]);
    const third = await refusedUpgrade(connect(TTS, alice));
    expect(third.status).toBe(429);
    expect(third.retryAfter).toBe('1');
    expect(third.body.error).toMatchObject({ code: 'account_limit_exceeded', limit: 'ws_connections' });
    expect(upgradesSeen('/waves/v1/lightning-v3.1/get_speech/stream')).toBe(2);

    first.close();
    await until(() => stack!.ledger.inUse('account', 'smallest-tts', 'ws_slots') === 1, 3000, 'slot back');
    await opened(connect(TTS, alice));
  });

  it('refuses a synthesis beyond the units with an error frame, forwards nothing, keeps the socket open', async () => {
    stack = await startLimitsStack({ concurrency: 1, wsPerUnit: 5 });
    const alice = await stack.token('alice', ['voice']);
    const a = connect(TTS, alice);
    const b = connect(TTS, alice);
    await Promise.all([opened(a), opened(b)]);
    const got = { a: frames(a), b: frames(b) };
    const text = (t: string, id: string) => JSON.stringify({ text: t, voice_id: 'magnus', request_id: id, complete_backoff_ms: 100 });

    a.send(text('The first synthesis holds the one unit.', 'a-1'));
    await until(() => got.a.some((f) => f.status === 'chunk'), 5000, 'audio on a');
    b.send(text('This one must wait.', 'b-1'));
    await until(() => got.b.length > 0, 5000, 'an answer on b');
    expect(got.b[0]).toMatchObject({ status: 'error', code: 'account_limit_exceeded', external_request_id: 'b-1' });
    expect(got.b[0]!.message).toBe(got.b[0]!.error);
    // Nothing of b's reached the provider.
    expect(stack.sim.frames().filter((f) => f.text.includes('b-1'))).toHaveLength(0);
    expect(b.readyState).toBe(WebSocket.OPEN);

    // Once a's synthesis is complete, the unit serves b.
    await until(() => got.a.some((f) => f.status === 'complete'), 10_000, 'complete on a');
    b.send(text('Now it fits.', 'b-2'));
    await until(() => got.b.some((f) => f.status === 'complete'), 10_000, 'complete on b');
    expect(got.b.filter((f) => f.status === 'error')).toHaveLength(1);
    expect(stack.sim.frames().filter((f) => f.text.includes('b-2'))).toHaveLength(1);
  });

  it('releases the synthesis unit of a socket closed mid-synthesis', async () => {
    stack = await startLimitsStack({ concurrency: 1, speedFactor: 1 });
    const alice = await stack.token('alice', ['voice']);
    const a = connect(TTS, alice);
    await opened(a);
    const got = frames(a);
    a.send(JSON.stringify({ text: 'A long synthesis that the client walks away from. '.repeat(3), voice_id: 'magnus' }));
    await until(() => got.some((f) => f.status === 'chunk'), 5000, 'audio');
    expect(stack.ledger.inUse('account', 'smallest-tts', 'tts_units')).toBe(1);
    a.terminate();
    const cut = Date.now();
    await until(() => stack!.ledger.inUse('account', 'smallest-tts', 'tts_units') === 0, 3000, 'unit back');
    expect(Date.now() - cut).toBeLessThan(250);
    const b = connect(TTS, alice);
    await opened(b);
    const gotB = frames(b);
    b.send(JSON.stringify({ text: 'Hi.', voice_id: 'magnus', complete_backoff_ms: 50 }));
    await until(() => gotB.some((f) => f.status === 'complete'), 10_000, 'complete on b');
    expect(gotB.filter((f) => f.status === 'error')).toHaveLength(0);
  });

  it('holds an STT unit from upgrade to close: the next socket is refused with 429 until then', async () => {
    stack = await startLimitsStack({ concurrency: 1 });
    const bob = await stack.token('bob', ['voice']);
    const first = connect(STT, bob);
    await opened(first);
    const second = await refusedUpgrade(connect(STT, bob));
    expect(second.status).toBe(429);
    expect(second.body.error).toMatchObject({ code: 'account_limit_exceeded', limit: 'concurrency' });
    expect(upgradesSeen('/waves/v1/pulse/get_text')).toBe(1);

    const done = closed(first);
    first.close(1000);
    await done;
    await until(() => stack!.ledger.inUse('account', 'smallest-stt', 'stt_units') === 0, 3000, 'unit back');
    const third = connect(STT, bob);
    await opened(third);
    // The simulator would close an over-limit STT socket with 1008; this one stays open.
    await new Promise((r) => setTimeout(r, 100));
    expect(third.readyState).toBe(WebSocket.OPEN);
  });

  it('releases everything live exchanges hold when the edge shuts down', async () => {
    stack = await startLimitsStack({ concurrency: 2 });
    const alice = await stack.token('alice', ['voice']);
    const tts = connect(TTS, alice);
    const stt = connect(STT, alice);
    await Promise.all([opened(tts), opened(stt)]);
    const got = frames(tts);
    tts.send(JSON.stringify({ text: 'Held while the gateway stops. '.repeat(4), voice_id: 'magnus' }));
    await until(() => got.some((f) => f.status === 'chunk'), 5000, 'audio');
    const rest = fetch(`${stack.edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'x-sim-delay-ms': '5000' },
      body: JSON.stringify({ text: 'Cut by the shutdown', voice_id: 'magnus' }),
    }).catch((err: unknown) => err);
    await until(() => stack!.ledger.inUse('account', 'smallest-tts', 'tts_units') === 2, 5000, 'both TTS units held');
    const held = (pool: 'tts_units' | 'stt_units' | 'ws_slots', account = 'smallest-tts') => stack!.ledger.inUse('account', account, pool);
    expect([held('ws_slots'), held('stt_units', 'smallest-stt')]).toEqual([1, 1]);
    await stack.edge.close();
    await rest;
    expect([held('tts_units'), held('ws_slots'), held('stt_units', 'smallest-stt')]).toEqual([0, 0, 0]);
  });

  it('limits open sessions per user with max_sessions, across TTS and STT', async () => {
    stack = await startLimitsStack({ concurrency: 4, limits: '  users: { alice: { max_sessions: 1 } }' });
    const alice = await stack.token('alice', ['voice']);
    await opened(connect(STT, alice));
    const refused = await refusedUpgrade(connect(TTS, alice));
    expect(refused.body.error).toMatchObject({ code: 'user_limit_exceeded', limit: 'max_sessions' });
    await opened(connect(TTS, await stack.token('carol', ['voice'])));
  });
});
