/**
 * Issue 9, "bounded resources": what a caller can hold before (and around) the decision. Each test
 * asserts what the client got and what the upstream received.
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { closed, opened, startTestEdge, startUpstream, until, type Upstream } from '../edge/helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setup(onSocket: ConstructorParameters<typeof Object>[0] = undefined, extra: Parameters<typeof startTestEdge>[1] = {}) {
  const seen = { requests: 0, headers: [] as Array<Record<string, unknown>>, messages: [] as number[] };
  const upstream: Upstream = await startUpstream(
    (req, res) => {
      seen.requests += 1;
      seen.headers.push(req.headers);
      req.resume();
      req.on('end', () => res.end('{}'));
    },
    (ws, req) => {
      seen.headers.push(req.headers);
      ws.on('message', (d: Buffer) => seen.messages.push(d.length));
      (onSocket as ((ws: WebSocket) => void) | undefined)?.(ws);
    },
  );
  const t = await startTestEdge(upstream.url, extra);
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return { ...t, upstream, seen, wsUrl: t.edge.url.replace('http:', 'ws:') };
}

/** A raw client socket; collects what the edge answers and when the socket closed. */
async function rawClient(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const got = { data: '', closedAt: 0 };
  socket.on('data', (d) => (got.data += d.toString()));
  socket.on('error', () => {});
  socket.on('close', () => (got.closedAt = Date.now()));
  cleanups.push(async () => void socket.destroy());
  return { socket, got };
}

describe('time limits before the decision', () => {
  it('closes a slowloris socket whose head never completes within headersTimeout', async () => {
    const { edge, seen } = await setup(undefined, { headersTimeoutMs: 400 });
    const { socket, got } = await rawClient(edge.port);
    const start = Date.now();
    socket.write('POST /smallest/waves/v1/tts HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => socket.writable && socket.write('x-a: b\r\n'), 100);
    try {
      await until(() => got.closedAt > 0, 3000, 'socket closed');
    } finally {
      clearInterval(drip);
    }
    expect(got.closedAt - start).toBeLessThan(2500);
    expect(seen.requests).toBe(0);
  });

  it('answers 408 request_timeout when the body the decision reads does not arrive, and the upstream never sees it', async () => {
    const { edge, seen, authorizer } = await setup(undefined, { decisionBodyTimeoutMs: 300 });
    const { socket, got } = await rawClient(edge.port);
    socket.write(
      'POST /smallest/waves/v1/tts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"text":"hi',
    );
    await until(() => got.data.includes('\r\n\r\n{'), 3000, 'an answer');
    expect(got.data).toMatch(/^HTTP\/1\.1 408 /);
    expect(got.data).toContain('"code":"request_timeout"');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.requests).toBe(0);
    expect(authorizer.inputs).toHaveLength(0);
  });

  it('denies a request without a token before reading its body', async () => {
    const { edge, seen } = await setup(undefined, { decisionBodyTimeoutMs: 10_000 });
    const { socket, got } = await rawClient(edge.port);
    const start = Date.now();
    socket.write('POST /smallest/waves/v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"te');
    await until(() => got.data.includes('\r\n\r\n{'), 3000, 'an answer');
    expect(Date.now() - start).toBeLessThan(2000);
    expect(got.data).toMatch(/^HTTP\/1\.1 401 /);
    expect(got.data).toContain('"code":"missing_token"');
    expect(seen.requests).toBe(0);
  });

  it('caps concurrent connections per edge', async () => {
    const { edge } = await setup(undefined, { maxConnections: 2 });
    const a = await rawClient(edge.port);
    const b = await rawClient(edge.port);
    const c = await rawClient(edge.port);
    await until(() => c.got.closedAt > 0, 3000, 'third connection refused');
    expect(a.got.closedAt).toBe(0);
    expect(b.got.closedAt).toBe(0);
  });
});

describe('WebSocket limits', () => {
  const path = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';

  it('closes a 17 MiB message with 1009 without relaying it; a 15 MiB one passes', async () => {
    const { wsUrl, seen } = await setup();
    const ok = new WebSocket(`${wsUrl}${path}`, { headers: { authorization: 'Bearer good' }, maxPayload: 64 << 20 });
    await opened(ok);
    ok.send(Buffer.alloc(15 << 20, 1));
    await until(() => seen.messages.length === 1, 10_000, '15 MiB message upstream');
    expect(seen.messages).toEqual([15 << 20]);
    ok.close();

    const big = new WebSocket(`${wsUrl}${path}`, { headers: { authorization: 'Bearer good' } });
    big.on('error', () => {});
    await opened(big);
    const done = closed(big);
    big.send(Buffer.alloc(17 << 20, 2));
    expect((await done).code).toBe(1009);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.messages).toEqual([15 << 20]);
  });

  it('closes with 1009 when the upstream sends more than the limit', async () => {
    const { wsUrl } = await setup((ws: WebSocket) => ws.on('message', () => ws.send(Buffer.alloc(17 << 20, 3))));
    const c = new WebSocket(`${wsUrl}${path}`, { headers: { authorization: 'Bearer good' }, maxPayload: 64 << 20 });
    c.on('error', () => {});
    const got: number[] = [];
    c.on('message', (d: Buffer) => got.push(d.length));
    await opened(c);
    const done = closed(c);
    c.send('go');
    expect((await done).code).toBe(1009);
    expect(got).toEqual([]);
  });

  it('never passes a JWT offered as a subprotocol to the upstream', async () => {
    const { wsUrl, seen } = await setup();
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl';
    const a = new WebSocket(`${wsUrl}${path}?token=good`, ['bearer', jwt, 'audio.v1']);
    await opened(a);
    expect(a.protocol).toBe('audio.v1');
    a.close();
    const b = new WebSocket(`${wsUrl}${path}?token=good`, ['bearer', jwt]);
    await opened(b);
    expect(b.protocol).toBe('bearer');
    b.close();
    expect(seen.headers).toHaveLength(2);
    for (const h of seen.headers) expect(JSON.stringify(h)).not.toContain(jwt);
    expect(seen.headers[0]!['sec-websocket-protocol']).toBe('audio.v1');
    expect(seen.headers[1]!['sec-websocket-protocol']).toBeUndefined();
  });
});
