/**
 * What clients see when things go wrong, through the edge with the real decision, in both authz
 * modes: the upstream is down, the provider is out of units (429 passed through), the client
 * leaves mid-stream (the provider's unit is released at once).
 */
import { createServer } from 'node:net';
import { fetch, type Response } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../edge/helpers.ts';
import { AUTHZ_MODES, startStack, type Stack } from './stack.ts';
import { ResponseLedger, upstreamRequestsContaining } from './wire.ts';

const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const SSE = '/smallest/waves/v1/lightning-v3.1/stream';

/** A loopback port nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe.each(AUTHZ_MODES)('failures through the edge (authz %s)', (mode) => {
  const ledger = new ResponseLedger();

  describe('upstream down', () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack(mode, { upstream: `http://127.0.0.1:${await closedPort()}` });
    });
    afterAll(async () => {
      await stack?.close();
    });

    it.each([TTS, SSE])('answers a JSON 502 on %s', async (path) => {
      const res = await fetch(`${stack.edge.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.tokens.alice}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'Nobody is listening.', voice_id: 'magnus' }),
      });
      const text = await res.text();
      ledger.add('502', res.headers, text);
      expect(res.status).toBe(502);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(JSON.parse(text)).toEqual({ error: { code: 'upstream_unreachable', message: expect.any(String) } });
      expect(stack.sim.requests()).toEqual([]);
    });
  });

  describe('a provider key with one unit', () => {
    let stack: Stack;
    // Realistic pacing at 4× real time, so a long stream holds its unit for many seconds.
    beforeAll(async () => {
      stack = await startStack(mode, { units: 1, simulator: { firstAudioMs: 50, speedFactor: 4 } });
    });
    afterAll(async () => {
      await stack?.close();
    });

    const tts = (extra: Record<string, string> = {}, body: Record<string, unknown> = {}, signal?: AbortSignal, path = TTS): Promise<Response> =>
      fetch(`${stack.edge.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.tokens.alice}`, 'content-type': 'application/json', ...extra },
        body: JSON.stringify({ text: 'Short.', voice_id: 'magnus', sample_rate: 8000, ...body }),
        ...(signal ? { signal } : {}),
      });

    it("passes the provider's 429 through while the unit is held", async () => {
      const holder = tts({ 'x-sim-delay-ms': '1000', 'x-request-id': `hold-${mode}` });
      await until(() => stack.sim.requests().some((r) => r.headers['x-request-id'] === `hold-${mode}`), 5000, 'the holding request');
      // The simulator takes the unit once it has read the (tiny) body, right after recording it.
      await new Promise((r) => setTimeout(r, 250));

      const before = stack.sim.requests().length;
      const limited = await tts();
      const text = await limited.text();
      ledger.add('429', limited.headers, text);
      expect(limited.status).toBe(429);
      expect(limited.headers.get('content-type')).toMatch(/^application\/json/);
      expect(JSON.parse(text)).toEqual({ error: 'Rate limit exceeded. Please try again later.' });
      // The 429 is the provider's: the request did reach the simulator.
      expect(stack.sim.requests().length).toBe(before + 1);

      const held = await holder;
      const audio = Buffer.from(await held.arrayBuffer());
      ledger.add('held', held.headers, audio);
      expect(held.status).toBe(200);
      expect(audio.length).toBeGreaterThan(0);
    });

    it('releases the unit as soon as the client aborts a long SSE stream', async () => {
      // 800 characters = 50 s of audio: about 12 s of generation at 4× real time.
      const text = 'Aborting a stream must free the provider unit it holds right away. '.repeat(13).slice(0, 800);
      const abort = new AbortController();
      const stream = await tts({}, { text }, abort.signal, SSE);
      expect(stream.status).toBe(200);
      const reader = stream.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain('event: audio');
      ledger.add('sse before abort', stream.headers, first.value);

      // While the stream runs, the only unit is taken.
      const busy = await tts();
      ledger.add('busy', busy.headers, await busy.text());
      expect(busy.status).toBe(429);

      abort.abort();
      await reader.read().catch(() => undefined);
      // Long before the stream would have ended, the unit is free again: a new request gets audio.
      let status = 0;
      const deadline = Date.now() + 4000;
      while (Date.now() < deadline) {
        const res = await tts();
        ledger.add('after abort', res.headers, Buffer.from(await res.arrayBuffer()));
        status = res.status;
        if (status !== 429) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(status).toBe(200);
    });

    it('never showed a provider key to a client, nor a caller token to the simulator', () => {
      expect(ledger.size).toBeGreaterThanOrEqual(6);
      expect(ledger.containing(stack.keys.tts)).toEqual([]);
      expect(ledger.containing(stack.keys.stt)).toEqual([]);
      expect(upstreamRequestsContaining(stack.sim.requests(), Object.values(stack.tokens))).toEqual([]);
    });
  });
});
