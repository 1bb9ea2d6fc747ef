/** Behaviours the edge shares with envoy/envoy.yaml: idle bounds on streams and sessions, XFF/XFP. */
import http, { type IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import WebSocket from 'ws';
import { forwardedFields } from '../../extproc/core/exchange/headers.ts';
import { startIdleTimer } from '../../extproc/adapters/edge/idle-timer.ts';
import { closed, opened, readBody, startTestEdge, startUpstream, until } from './helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(
  onRequest: Parameters<typeof startUpstream>[0],
  onSocket: Parameters<typeof startUpstream>[1] = () => {},
  extra: Parameters<typeof startTestEdge>[1] = {},
) {
  const upstream = await startUpstream(onRequest, onSocket);
  const t = await startTestEdge(upstream.url, extra);
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return { upstream, ...t, wsUrl: t.edge.url.replace('http:', 'ws:') };
}

/** POSTs to the SSE route and collects what arrives until the connection ends, however it ends. */
function sse(url: string): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' } });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
    });
    req.end('{"text":"hi","voice_id":"magnus"}');
  });
}

describe('edge stream idle timeout (envoy.yaml idle_timeout / stream_idle_timeout)', () => {
  it('ends a silent SSE stream after the head: client cut, upstream aborted, observer told why', async () => {
    let upstreamAborted = false;
    const { edge, rec } = await setup((req, res) => {
      res.on('close', () => (upstreamAborted = !res.writableFinished));
      void readBody(req).then(() => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"audio":"AAAA"}\n\n');
        // …then nothing, ever.
      });
    }, undefined, { streamIdleTimeoutMs: 200 });
    const r = await sse(`${edge.url}/smallest/waves/v1/lightning-v3.1/stream`);
    expect(r.status).toBe(200);
    expect(r.body).toBe('data: {"audio":"AAAA"}\n\n');
    expect(r.complete).toBe(false);
    await until(() => upstreamAborted, 3000, 'upstream request aborted');
    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 200, error: 'stream_idle_timeout' });
  });

  it('ends a plain REST response that stalls mid-body', async () => {
    const { edge, rec } = await setup((req, res) => {
      void readBody(req).then(() => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"transcription":');
      });
    }, undefined, { streamIdleTimeoutMs: 200 });
    const r = await new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
      const req = http.request(`${edge.url}/smallest/waves/v1/pulse/get_text`, {
        method: 'POST',
        headers: { authorization: 'Bearer good', 'content-type': 'audio/wav' },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        res.resume();
        res.on('error', () => {});
        res.on('close', () => resolve({ status: res.statusCode ?? 0, complete: res.complete }));
      });
      req.end(Buffer.alloc(1000));
    });
    expect(r).toEqual({ status: 200, complete: false });
    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 200, error: 'stream_idle_timeout' });
  });

  it('keeps a stream open while bytes keep flowing, however long it lasts', async () => {
    const { edge, rec } = await setup((req, res) => {
      void readBody(req).then(async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        // 12 events 50 ms apart (10x margin under the bound): the stream outlives the 500 ms bound.
        for (let i = 0; i < 12; i++) {
          res.write(`data: ${i}\n\n`);
          await new Promise((r) => setTimeout(r, 50));
        }
        res.end();
      });
    }, undefined, { streamIdleTimeoutMs: 500 });
    const r = await sse(`${edge.url}/smallest/waves/v1/lightning-v3.1/stream`);
    expect(r.complete).toBe(true);
    expect(r.body.match(/^data: /gm)).toHaveLength(12);
    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 200, endedBy: 'upstream' });
  });

  it('closes a silent WebSocket session both ways with 1001', async () => {
    let upstreamClose: Promise<{ code: number; reason: string }> | undefined;
    const { wsUrl, rec } = await setup(
      (_q, s) => s.end(),
      (ws) => {
        upstreamClose = closed(ws);
        ws.on('message', (d, b) => ws.send(d, { binary: b }));
      },
      { streamIdleTimeoutMs: 200 },
    );
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`);
    const clientClose = closed(client);
    await opened(client);
    client.send('{"text":"once"}');
    expect((await clientClose).code).toBe(1001);
    expect((await upstreamClose!).code).toBe(1001);
    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 101, closeCode: 1001, error: 'idle_timeout', endedBy: 'gateway' });
    expect(rec.exchanges[0]!.upstreamMessages.map((m) => m.text)).toEqual(['{"text":"once"}']);
  });

  it('counts pings as activity, as Envoy counts any bytes on the stream', async () => {
    const { wsUrl, rec } = await setup((_q, s) => s.end(), () => {}, { streamIdleTimeoutMs: 500 });
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`);
    await opened(client);
    let pongs = 0;
    client.on('pong', () => pongs++);
    // Only control frames, 50 ms apart, for more than twice the bound.
    for (let i = 0; i < 24; i++) {
      client.ping();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(client.readyState).toBe(WebSocket.OPEN);
    expect(pongs).toBeGreaterThan(0);
    const done = closed(client);
    client.close(1000, 'bye');
    expect((await done).code).toBe(1000);
    await until(() => rec.exchanges[0]?.ends.length === 1, 3000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 101, closeCode: 1000, endedBy: 'client' });
  });
});

describe('edge x-forwarded-for / x-forwarded-proto (use_remote_address: true)', () => {
  it('appends the peer to x-forwarded-for and overwrites x-forwarded-proto on REST', async () => {
    const seen: IncomingMessage['headers'][] = [];
    const { edge, authorizer } = await setup((req, res) => {
      seen.push(req.headers);
      res.end('ok');
    });
    const a = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: 'Bearer good', 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' },
      body: '{"text":"hi"}',
    });
    await a.body.dump();
    const b = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: 'Bearer good' },
      body: '{"text":"hi"}',
    });
    await b.body.dump();
    expect(seen[0]!['x-forwarded-for']).toBe('203.0.113.7,127.0.0.1');
    expect(seen[0]!['x-forwarded-proto']).toBe('http');
    expect(seen[1]!['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen[1]!['x-forwarded-proto']).toBe('http');
    // Envoy's connection manager sets them before ext_authz, so Check sees them too.
    expect(authorizer.inputs[0]!.headers['x-forwarded-for']).toBe('203.0.113.7,127.0.0.1');
    expect(authorizer.inputs[0]!.headers['x-forwarded-proto']).toBe('http');
  });

  it('sets them on the upstream WebSocket handshake', async () => {
    let upstreamReq: IncomingMessage | undefined;
    const { wsUrl } = await setup((_q, s) => s.end(), (_ws, req) => (upstreamReq = req));
    const client = new WebSocket(`${wsUrl}/smallest/waves/v1/tts/live?token=good`, {
      headers: { 'x-forwarded-for': '198.51.100.1, 10.0.0.2', 'x-forwarded-proto': 'wss' },
    });
    await opened(client);
    expect(upstreamReq!.headers['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.2,127.0.0.1');
    expect(upstreamReq!.headers['x-forwarded-proto']).toBe('http');
    const done = closed(client);
    client.close();
    await done;
  });
});

describe('edge parity building blocks', () => {
  it('idle timer: fires once after silence, is deferred by activity, and can be stopped or disabled', async () => {
    let fired = 0;
    const t = startIdleTimer(400, () => fired++);
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 40));
      t.touch();
    }
    expect(fired).toBe(0);
    await until(() => fired === 1, 2000, 'idle fire');
    await new Promise((r) => setTimeout(r, 300));
    expect(fired).toBe(1);

    let stopped = 0;
    const s = startIdleTimer(50, () => stopped++);
    s.stop();
    const d = startIdleTimer(0, () => stopped++);
    d.touch();
    await new Promise((r) => setTimeout(r, 150));
    expect(stopped).toBe(0);
  });

  it('forwarded fields: append with Envoy\'s delimiter, join repeats, unmap IPv4-mapped peers', () => {
    expect(forwardedFields(undefined, '10.1.2.3', 'http')).toEqual({ 'x-forwarded-for': '10.1.2.3', 'x-forwarded-proto': 'http' });
    expect(forwardedFields(['1.1.1.1', '2.2.2.2'], '::ffff:10.1.2.3', 'https')).toEqual({
      'x-forwarded-for': '1.1.1.1,2.2.2.2,10.1.2.3',
      'x-forwarded-proto': 'https',
    });
    expect(forwardedFields(undefined, '2001:db8::1', 'http')['x-forwarded-for']).toBe('2001:db8::1');
    expect(forwardedFields(['9.9.9.9'], undefined, 'http')).toEqual({ 'x-forwarded-for': '9.9.9.9', 'x-forwarded-proto': 'http' });
    expect(forwardedFields(undefined, undefined, 'http')).toEqual({ 'x-forwarded-proto': 'http' });
  });
});
