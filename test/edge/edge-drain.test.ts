/**
 * The edge's drain as the runner drives it (drain, then close with the window): not ready on its own
 * /readyz while still serving, in-flight REST finishes within the window, WebSockets are closed with
 * 1001 on both legs, what outlives the window is cut, and every exchange's observer has ended (its
 * span published) by the time close resolves — so the usage sink, closed next, drops nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import WebSocket from 'ws';
import { closed, opened, startTestEdge, startUpstream, until } from './helpers.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const BODY = Buffer.alloc(64 * 1024, 7);

/** An upstream answering REST after `ms`, and recording how its WebSocket sessions were closed. */
async function slowUpstream(ms: number) {
  const upstreamCloses: number[] = [];
  const upstream = await startUpstream(
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'audio/wav' });
      res.write(BODY.subarray(0, 1024));
      setTimeout(() => res.end(BODY.subarray(1024)), ms);
    },
    (ws) => ws.on('close', (code) => upstreamCloses.push(code)),
  );
  cleanups.push(() => upstream.close());
  return { upstream, upstreamCloses };
}

describe('edge drain', () => {
  it('serves while draining, finishes REST in the window, closes WebSockets with 1001 on both legs, ends every observer', async () => {
    const { upstream, upstreamCloses } = await slowUpstream(600);
    const { edge, rec } = await startTestEdge(upstream.url);
    cleanups.push(() => edge.close());

    const ws = new WebSocket(`${edge.url.replace(/^http/, 'ws')}/smallest/waves/v1/tts/live?token=good`);
    await opened(ws);
    const wsClosed = closed(ws);
    const rest = Array.from({ length: 3 }, async () => {
      const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech?token=good`, { method: 'POST', body: '{"text":"hi"}' });
      return { status: r.statusCode, body: Buffer.from(await r.body.arrayBuffer()) };
    });
    await until(() => rec.exchanges.length === 4, 5000, 'four exchanges admitted');

    edge.drain();
    const readyz = await request(`${edge.url}/readyz`);
    expect(readyz.statusCode).toBe(503);
    await readyz.body.dump();

    const t0 = Date.now();
    await edge.close({ graceMs: 5000 });
    const closeMs = Date.now() - t0;
    for (const r of await Promise.all(rest)) {
      expect(r.status).toBe(200);
      expect(r.body.equals(BODY)).toBe(true);
    }
    expect((await wsClosed).code).toBe(1001);
    await until(() => upstreamCloses.length === 1, 2000, 'the upstream leg closed');
    expect(upstreamCloses).toEqual([1001]);
    // Every span was handed over before close resolved, none after.
    expect(rec.exchanges.map((x) => x.ends.length)).toEqual([1, 1, 1, 1]);
    expect(rec.exchanges.find((x) => x.ends[0]?.closeCode !== undefined)?.ends[0]).toMatchObject({ status: 101, closeCode: 1001 });
    // Bounded by the exchanges (~600 ms), not by the 5 s window.
    expect(closeMs).toBeLessThan(3000);
    // Accepting has stopped.
    await expect(request(`${edge.url}/healthz`)).rejects.toThrow();
  });

  it('cuts a response that outlives the window; its observer ends with drain_timeout before close resolves', async () => {
    const { upstream } = await slowUpstream(10_000);
    const { edge, rec } = await startTestEdge(upstream.url);
    const pending = request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech?token=good`, { method: 'POST', body: '{"text":"hi"}' }).then(
      async (r) => ({ status: r.statusCode, body: await r.body.arrayBuffer().then((b) => b.byteLength, () => -1) }),
    );
    await until(() => rec.exchanges[0]?.calls.includes('responseChunk') === true, 5000, 'the first body bytes');
    const t0 = Date.now();
    await edge.close({ graceMs: 300 });
    const closeMs = Date.now() - t0;
    expect(closeMs).toBeGreaterThanOrEqual(290);
    expect(closeMs).toBeLessThan(2000);
    expect(rec.exchanges[0]!.ends).toEqual([{ status: 200, error: 'drain_timeout' }]);
    // The client saw the head and a cut body, never the full 64 KiB.
    expect(await pending).toMatchObject({ status: 200, body: -1 });
  });
});
