import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { closed, opened, PROVIDER_KEY, startTestEdge, startUpstream, until, type Upstream } from './helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(
  onSocket: Parameters<typeof startUpstream>[1],
  wsOptions: Parameters<typeof startUpstream>[2] = {},
  extra: Parameters<typeof startTestEdge>[1] = {},
) {
  const upstream = await startUpstream((_q, s) => s.end(), onSocket, wsOptions);
  const t = await startTestEdge(upstream.url, extra);
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return { upstream, ...t, wsUrl: t.edge.url.replace('http:', 'ws:') };
}

function rejected(ws: WebSocket): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    ws.on('error', () => {});
    ws.once('open', () => reject(new Error('unexpectedly opened')));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
  });
}

describe('edge WebSocket relay', () => {
  it('injects the provider key, passes the subprotocol, keeps frame types and relays the client close', async () => {
    let upstreamReq: IncomingMessage | undefined;
    let pendingResolve!: (v: { code: number; reason: string }) => void;
    const upstreamClosed = new Promise<{ code: number; reason: string }>((resolve) => (pendingResolve = resolve));
    const { wsUrl, rec } = await setup(
      (ws, req) => {
        upstreamReq = req;
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })); // echo
        ws.on('close', (code, reason) => pendingResolve({ code, reason: reason.toString() }));
      },
      { handleProtocols: (p) => (p.has('tts.v1') ? 'tts.v1' : false) },
    );
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good&timeout=30`, ['tts.v1', 'other'], {
      headers: { 'x-source': 'pipecat', cookie: 'a=b', 'x-api-key': 'sk_caller' },
    });
    const got: Array<{ data: Buffer; binary: boolean }> = [];
    client.on('message', (d: Buffer, binary) => got.push({ data: d, binary }));
    await opened(client);
    expect(client.protocol).toBe('tts.v1');
    expect(upstreamReq!.url).toBe('/waves/v1/tts/live?timeout=30');
    expect(upstreamReq!.headers.authorization).toBe(`Bearer ${PROVIDER_KEY}`);
    expect(upstreamReq!.headers.cookie).toBeUndefined();
    expect(upstreamReq!.headers['x-api-key']).toBeUndefined();
    expect(upstreamReq!.headers['x-source']).toBe('pipecat');
    expect(upstreamReq!.headers['sec-websocket-protocol']).toBe('tts.v1,other');

    client.send('{"text":"hello","voice_id":"magnus"}');
    client.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    await until(() => got.length === 2, 3000, 'echoes');
    expect(got[0]!.data.toString()).toBe('{"text":"hello","voice_id":"magnus"}');
    expect(got[0]!.binary).toBe(false);
    expect(got[1]!.binary).toBe(true);
    expect([...got[1]!.data]).toEqual([0, 1, 2, 255]);

    const clientClosed = closed(client);
    client.close(4001, 'client done');
    expect(await upstreamClosed).toEqual({ code: 4001, reason: 'client done' });
    expect((await clientClosed).code).toBe(4001);

    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    const x = rec.exchanges[0]!;
    expect(x.exchange.routeKind).toBe('websocket');
    expect(x.exchange.upgrade).toBe(true);
    expect(x.decision.metadata.upstream_path).toBe('/waves/v1/tts/live?timeout=30');
    expect(x.clientMessages).toEqual([
      { text: '{"text":"hello","voice_id":"magnus"}', binary: false },
      { text: Buffer.from([0, 1, 2, 255]).toString(), binary: true },
    ]);
    expect(x.upstreamMessages.map((m) => m.binary)).toEqual([false, true]);
    expect(x.ends).toEqual([{ status: 101, closeCode: 4001, endedBy: 'client' }]);
  });

  it('relays an upstream close code and reason to the client and maps 1006 to 1011', async () => {
    const { wsUrl } = await setup((ws, req) => {
      if (req.url?.includes('mode=abrupt')) setTimeout(() => ws.terminate(), 20);
      else setTimeout(() => ws.close(1008, 'too many sockets'), 20);
    });
    const a = new WebSocket(`${wsUrl}/smallest/waves/v1/pulse/get_text?token=good`);
    expect(await closed(a)).toEqual({ code: 1008, reason: 'too many sockets' });
    const b = new WebSocket(`${wsUrl}/smallest/waves/v1/pulse/get_text?token=good&mode=abrupt`);
    expect((await closed(b)).code).toBe(1011);
  });

  it('answers pings and forwards them upstream', async () => {
    let upstreamPinged = false;
    const { wsUrl } = await setup((ws) => ws.on('ping', () => (upstreamPinged = true)));
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live`, { headers: { authorization: 'Bearer good' } });
    await opened(client);
    const pong = new Promise<string>((r) => client.once('pong', (d) => r(d.toString())));
    client.ping('keepalive');
    expect(await pong).toBe('keepalive');
    await until(() => upstreamPinged, 3000, 'upstream ping');
    client.close();
  });

  it('denies an upgrade without a token with a plain 401 and never connects upstream', async () => {
    let connections = 0;
    const { wsUrl, rec } = await setup(() => connections++);
    const r = await rejected(new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live`));
    expect(r.status).toBe(401);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['www-authenticate']).toBe('Bearer realm="voicegate"');
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'missing_token', message: 'denied: missing_token' } });
    expect(connections).toBe(0);
    expect(rec.exchanges[0]!.ends).toEqual([{ status: 401 }]);
  });

  for (const status of [401, 429]) {
    it(`passes an upstream ${status} upgrade rejection through with its body`, async () => {
      const body = status === 401 ? '{"error":"unauthorized"}' : '{"error":"Rate limit exceeded. Please try again later."}';
      const { wsUrl, rec } = await setup(() => {}, {
        verifyClient: (_info, cb) => cb(false, status, body, { 'Content-Type': 'application/json', 'X-Request-Id': 'up-1' }),
      });
      const r = await rejected(new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`));
      expect(r.status).toBe(status);
      expect(r.body).toBe(body);
      expect(r.headers['content-type']).toBe('application/json');
      expect(r.headers['x-request-id']).toBe('up-1');
      await until(() => rec.exchanges[0]?.ends.length === 1);
      expect(rec.exchanges[0]!.ends).toEqual([{ status }]);
    });
  }

  it('answers 502 when the upstream is down', async () => {
    const dead: Upstream = await startUpstream((_q, s) => s.end());
    const url = dead.url;
    await dead.close();
    const t = await startTestEdge(url);
    cleanups.push(() => t.edge.close());
    const r = await rejected(new WebSocket(`${t.edge.url.replace('http:', 'ws:')}/smallest/waves/v1/tts/live?token=good`));
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'upstream_unreachable' } });
  });

  it('closes the upstream socket when the client vanishes', async () => {
    let upstreamClosed = false;
    const { wsUrl, rec } = await setup((ws) => ws.on('close', () => (upstreamClosed = true)));
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`);
    await opened(client);
    client.terminate();
    await until(() => upstreamClosed, 5000, 'upstream close');
    await until(() => rec.exchanges[0]?.ends.length === 1);
    expect(rec.exchanges[0]!.ends[0]!.status).toBe(101);
  });

  /**
   * A fast upstream pushes 96 MiB at a client that reads nothing. Measured: how much the upstream
   * got rid of and how much the process's Buffer memory (`arrayBuffers`, where queued frames live)
   * grew. With the edge's thresholds the edge stops reading the upstream; the control run raises
   * them out of reach, so the same traffic piles up inside the edge — the measurement tells them apart.
   */
  async function pushAtPausedClient(extra: Parameters<typeof startTestEdge>[1], patienceMs: number) {
    const chunk = Buffer.alloc(128 * 1024, 7);
    const total = 96 * 1024 * 1024;
    let sent = 0;
    let stalled = false;
    let upstreamWs: WebSocket | undefined;
    const { wsUrl } = await setup((ws) => {
      upstreamWs = ws;
      const pump = () => {
        while (sent < total && ws.readyState === WebSocket.OPEN) {
          if (ws.bufferedAmount > 8 * 1024 * 1024) {
            stalled = true;
            setTimeout(pump, 20);
            return;
          }
          ws.send(chunk, { binary: true });
          sent += chunk.length;
        }
      };
      ws.once('message', pump);
    }, {}, extra);
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`);
    await opened(client);
    let received = 0;
    client.on('message', (d: Buffer) => (received += d.length));
    client.pause();
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    client.send('go');
    await until(() => stalled || sent === total, 15_000, 'upstream stall or done');
    // Give the upstream time to push the rest if the edge keeps reading (it does without limits).
    const deadline = Date.now() + patienceMs;
    while (sent < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    const grewBy = process.memoryUsage().arrayBuffers - before;
    const sentWhilePaused = sent;
    client.resume();
    await until(() => received === total, 30_000, 'full delivery after resume');
    expect(upstreamWs!.bufferedAmount).toBe(0);
    client.close();
    return { total, sentWhilePaused, grewBy };
  }

  it('applies backpressure: a paused reader stalls the upstream instead of growing the edge', async () => {
    const held = await pushAtPausedClient({}, 1_500);
    const MiB = 1024 * 1024;
    // The upstream could not push everything: the edge stopped reading it…
    expect(held.sentWhilePaused).toBeLessThan(held.total / 2);
    // …so the edge held a few MiB (its 1 MiB high water, socket buffers, the upstream's own 8 MiB
    // queue in this same process), not the 96 MiB on offer.
    expect(held.grewBy).toBeLessThan(32 * MiB);

    const unbounded = await pushAtPausedClient({ wsHighWaterBytes: 1 << 30, wsLowWaterBytes: 1 << 29 }, 15_000);
    expect(unbounded.sentWhilePaused).toBe(unbounded.total);
    // Part of what the edge queues reaches kernel socket buffers, and the upstream's sent chunks are
    // freed meanwhile (and the collector may run), so the control's growth is well below the 96 MiB it
    // relayed — CI saw 37.5 MiB — but still a multiple of ours.
    expect(unbounded.grewBy).toBeGreaterThan(Math.max(16 * MiB, 2 * held.grewBy));
  }, 90_000);
});
