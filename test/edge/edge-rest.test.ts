import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { PROVIDER_KEY, TestAuthorizer, readBody, startTestEdge, startUpstream, until, type Upstream } from './helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(handler: Parameters<typeof startUpstream>[0], extra: Parameters<typeof startTestEdge>[1] = {}) {
  const upstream = await startUpstream(handler);
  const t = await startTestEdge(upstream.url, extra);
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return { upstream, ...t };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('edge own routes', () => {
  it('answers /healthz without asking the authorizer and /readyz by snapshot presence', async () => {
    const { edge, authorizer } = await setup((_q, s) => s.end());
    const h = await request(`${edge.url}/healthz`);
    expect(h.statusCode).toBe(200);
    expect(await h.body.json()).toEqual({ status: 'ok' });
    const r = await request(`${edge.url}/readyz`);
    expect(r.statusCode).toBe(200);
    await r.body.dump();
    expect(authorizer.inputs).toHaveLength(0);

    const empty = await startEdge({ host: '127.0.0.1', port: 0, source: new StaticSnapshotSource(), authorizer });
    cleanups.push(() => empty.close());
    const nr = await request(`${empty.url}/readyz`);
    expect(nr.statusCode).toBe(503);
    await nr.body.dump();
  });
});

describe('edge REST passthrough', () => {
  it('streams a large upload and a large response with status, headers and bytes intact', async () => {
    const upload = randomBytes(5 * 1024 * 1024);
    const answer = randomBytes(3 * 1024 * 1024 + 17);
    let seen: Buffer | undefined;
    const { edge, rec, authorizer } = await setup(async (req, res) => {
      seen = await readBody(req);
      res.writeHead(201, {
        'Content-Type': 'audio/wav',
        'X-Request-Id': 'srv-req-1',
        'X-Session-Id': 'srv-sess-1',
        'X-External-Request-Id': 'ext-req-1',
        'X-External-Session-Id': 'ext-sess-1',
        'Set-Cookie': ['a=1', 'b=2'],
      });
      // Several writes so the relay sees a real stream, not one chunk.
      for (let i = 0; i < answer.length; i += 256 * 1024) res.write(answer.subarray(i, i + 256 * 1024));
      res.end();
    });
    const r = await request(`${edge.url}/smallest/waves/v1/pulse/get_text?language=en`, {
      method: 'POST',
      headers: { authorization: 'Bearer good', 'content-type': 'audio/wav' },
      body: upload,
    });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(201);
    expect(r.headers['content-type']).toBe('audio/wav');
    expect(r.headers['x-request-id']).toBe('srv-req-1');
    expect(r.headers['x-session-id']).toBe('srv-sess-1');
    expect(r.headers['x-external-request-id']).toBe('ext-req-1');
    expect(r.headers['x-external-session-id']).toBe('ext-sess-1');
    expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(sha(body)).toBe(sha(answer));
    expect(seen && sha(seen)).toBe(sha(upload));
    // Audio uploads are never buffered for the decision.
    expect(authorizer.inputs[0]?.body).toBeUndefined();
    await until(() => rec.exchanges[0]?.ends.length === 1, 2000, 'observer end');
    const x = rec.exchanges[0]!;
    expect(rec.exchanges).toHaveLength(1);
    expect(x.decision.kind).toBe('allow');
    expect(x.requestBytes).toBe(upload.length);
    expect(x.responseBytes).toBe(answer.length);
    expect(x.ends).toEqual([{ status: 201, endedBy: 'upstream' }]);
  });

  it('applies the decision with overwrite semantics and never forwards caller credentials', async () => {
    let up: { url: string; headers: http.IncomingHttpHeaders; raw: string[]; body: string } | undefined;
    const { edge, authorizer, rec, upstream, source } = await setup(async (req, res) => {
      up = { url: req.url!, headers: req.headers, raw: req.rawHeaders, body: (await readBody(req)).toString() };
      res.writeHead(200, { 'content-type': 'audio/wav' });
      res.end('RIFF');
    });
    const json = JSON.stringify({ text: 'hello there', voice_id: 'magnus' });
    const r = await request(`${edge.url}/smallest/api/v1/lightning-v3.1/get_speech?token=good&sample_rate=8000&x=a%20b`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer caller-jwt',
        'x-api-key': 'sk_caller',
        cookie: 'session=abc',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-source': 'python-sdk',
        'x-fern-language': 'Python',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        'content-type': 'application/json',
      },
      body: json,
    });
    const text = await r.body.text();
    // `caller-jwt` is not `good`: the scripted decision denies; use a good token for the real check.
    expect(r.statusCode).toBe(401);
    expect(text).not.toContain(PROVIDER_KEY);

    const ok = await request(`${edge.url}/smallest/api/v1/lightning-v3.1/get_speech?token=good&sample_rate=8000&x=a%20b`, {
      method: 'POST',
      headers: {
        'x-api-key': 'sk_caller',
        cookie: 'session=abc',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-source': 'python-sdk',
        'x-fern-language': 'Python',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        'content-type': 'application/json',
      },
      body: json,
    });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe('RIFF');
    for (const v of Object.values(ok.headers)) expect(String(v)).not.toContain(PROVIDER_KEY);

    expect(up!.url).toBe('/waves/v1/lightning-v3.1/get_speech?sample_rate=8000&x=a%20b');
    const authLines = up!.raw.filter((_, i) => i % 2 === 0 && up!.raw[i]!.toLowerCase() === 'authorization');
    expect(authLines).toHaveLength(1);
    expect(up!.headers.authorization).toBe(`Bearer ${PROVIDER_KEY}`);
    expect(up!.headers['x-api-key']).toBeUndefined();
    expect(up!.headers.cookie).toBeUndefined();
    expect(up!.headers['proxy-authorization']).toBeUndefined();
    expect(up!.headers['x-source']).toBe('python-sdk');
    expect(up!.headers['x-fern-language']).toBe('Python');
    expect(up!.headers.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(up!.headers.host).toBe(new URL(upstream.url).host);
    expect(up!.body).toBe(json);

    // The check request is Envoy-shaped and carries the JSON body on this TTS route.
    const input = authorizer.inputs[1]!;
    expect(input.method).toBe('POST');
    expect(input.path).toBe('/smallest/api/v1/lightning-v3.1/get_speech?token=good&sample_rate=8000&x=a%20b');
    expect(input.headers[':method']).toBe('POST');
    expect(input.headers[':path']).toBe(input.path);
    expect(input.headers[':authority']).toBe(new URL(edge.url).host);
    expect(input.host).toBe(new URL(edge.url).host);
    expect(Buffer.from(input.body!).toString()).toBe(json);
    expect(input.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(up!.headers['x-request-id']).toBe(input.requestId);

    // The observer is told the exchange as it arrived, once, with its snapshot, and the decision;
    // the token is stripped once, by the decision, in the upstream path the plan and metering use.
    await until(() => rec.exchanges[1]?.ends.length === 1);
    const { exchange, decision } = rec.exchanges[1]!;
    expect(exchange.pathWithQuery).toBe(input.path);
    expect(exchange.requestId).toBe(input.requestId);
    expect(exchange.snapshot).toBe(source.current());
    expect(decision.metadata.upstream_path).toBe('/waves/v1/lightning-v3.1/get_speech?sample_rate=8000&x=a%20b');
    expect(up!.url).toBe(decision.metadata.upstream_path);
  });

  it('sets host to the upstream host and keeps a caller x-request-id', async () => {
    let headers: http.IncomingHttpHeaders = {};
    const { edge, upstream, authorizer } = await setup((req, res) => {
      headers = req.headers;
      res.end('{}');
    });
    const r = await request(`${edge.url}/smallest/waves/v1/health`, {
      headers: { authorization: 'Bearer good', 'x-request-id': 'caller-rid-7' },
    });
    await r.body.dump();
    expect(headers.host).toBe(new URL(upstream.url).host);
    expect(headers['x-request-id']).toBe('caller-rid-7');
    expect(authorizer.inputs[0]!.requestId).toBe('caller-rid-7');
  });

  it('sends only the first 64 KiB of a large TTS body to the decision but the whole body upstream', async () => {
    let got: Buffer | undefined;
    const { edge, authorizer } = await setup(async (req, res) => {
      got = await readBody(req);
      res.end();
    });
    const big = Buffer.from(JSON.stringify({ text: 'x'.repeat(200_000), voice_id: 'magnus' }));
    const r = await request(`${edge.url}/smallest/waves/v1/tts`, {
      method: 'POST',
      headers: { authorization: 'Bearer good', 'content-type': 'application/json' },
      body: big,
    });
    await r.body.dump();
    expect(r.statusCode).toBe(200);
    const input = authorizer.inputs[0]!;
    expect(input.body!.byteLength).toBe(65536);
    expect(input.headers['x-envoy-auth-partial-body']).toBe('true');
    expect(got && sha(got)).toBe(sha(big));
  });
});

describe('edge denials', () => {
  let upstreamHits = 0;
  const cases = [
    { token: undefined, status: 401, code: 'missing_token', wwwAuth: 'Bearer realm="voicegate"' },
    { token: 'bad', status: 401, code: 'invalid_signature', wwwAuth: 'Bearer error="invalid_token"' },
    { token: 'forbidden', status: 403, code: 'not_entitled' },
    { token: 'unknown-model', status: 404, code: 'unknown_model' },
    { token: 'busy', status: 503, code: 'authz_unavailable' },
  ];
  for (const c of cases) {
    it(`answers ${c.status} ${c.code} with a JSON body and never reaches the upstream`, async () => {
      upstreamHits = 0;
      const { edge, rec } = await setup((_q, s) => {
        upstreamHits++;
        s.end();
      });
      const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(c.token ? { authorization: `Bearer ${c.token}` } : {}) },
        body: '{"text":"hi","voice_id":"magnus"}',
      });
      expect(r.statusCode).toBe(c.status);
      expect(r.headers['content-type']).toBe('application/json');
      if (c.wwwAuth) expect(r.headers['www-authenticate']).toBe(c.wwwAuth);
      expect(await r.body.json()).toEqual({ error: { code: c.code, message: `denied: ${c.code}` } });
      expect(upstreamHits).toBe(0);
      expect(rec.exchanges).toHaveLength(1);
      expect(rec.exchanges[0]!.decision.kind).toBe('deny');
      expect(rec.exchanges[0]!.ends).toEqual([{ status: c.status }]);
    });
  }

  it('fails closed with 503 authz_unavailable when the authorizer throws', async () => {
    const upstream = await startUpstream((_q, s) => s.end());
    const edge = await startEdge({
      host: '127.0.0.1',
      port: 0,
      source: new StaticSnapshotSource(),
      authorizer: { check: () => Promise.reject(new Error('boom')) },
    });
    cleanups.push(() => upstream.close(), () => edge.close());
    const r = await request(`${edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(r.statusCode).toBe(503);
    expect((await r.body.json()) as unknown).toMatchObject({ error: { code: 'authz_unavailable' } });
  });
});

describe('edge SSE', () => {
  it('delivers the first event before the upstream produces the last', async () => {
    let clientGotFirst!: () => void;
    const firstSeen = new Promise<void>((r) => (clientGotFirst = r));
    let upstreamSentLast = false;
    const { edge, rec } = await setup(async (req, res) => {
      await readBody(req);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('event: audio\ndata: {"audio":"AAA=","done":false,"status":"206"}\n\n');
      await firstSeen; // deadlocks (and the test times out) if the edge buffers
      for (let i = 0; i < 3; i++) res.write('event: audio\ndata: {"audio":"BBB=","done":false,"status":"206"}\n\n');
      upstreamSentLast = true;
      res.end('data: {"status":"200","done":true}\n\n');
    });
    const events: string[] = [];
    let lastWasSentWhenFirstArrived: boolean | undefined;
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${edge.url}/smallest/waves/v1/lightning-v3.1/stream`, {
        method: 'POST',
        headers: { authorization: 'Bearer good', 'content-type': 'application/json' },
      });
      req.on('response', (res) => {
        expect(res.headers['content-type']).toBe('text/event-stream');
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n\n')) !== -1) {
            events.push(buf.slice(0, i));
            buf = buf.slice(i + 2);
            if (events.length === 1) {
              lastWasSentWhenFirstArrived = upstreamSentLast;
              clientGotFirst();
            }
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end('{"text":"hello","voice_id":"magnus"}');
    });
    expect(lastWasSentWhenFirstArrived).toBe(false);
    expect(events).toHaveLength(5);
    expect(events[4]).toBe('data: {"status":"200","done":true}');
    await until(() => rec.exchanges[0]?.ends.length === 1);
    expect(rec.exchanges[0]!.ends).toEqual([{ status: 200, endedBy: 'upstream' }]);
  });
});

describe('edge upstream failures and aborts', () => {
  it('answers 502 upstream_unreachable when the upstream refuses connections', async () => {
    const dead: Upstream = await startUpstream((_q, s) => s.end());
    const url = dead.url;
    await dead.close();
    const t = await startTestEdge(url);
    cleanups.push(() => t.edge.close());
    const r = await request(`${t.edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(r.statusCode).toBe(502);
    expect(r.headers['content-type']).toBe('application/json');
    expect((await r.body.json()) as unknown).toMatchObject({ error: { code: 'upstream_unreachable' } });
    await until(() => t.rec.exchanges[0]?.ends.length === 1);
    expect(t.rec.exchanges[0]!.ends).toEqual([{ status: 502, error: 'upstream_unreachable' }]);
  });

  it('answers 504 upstream_timeout when the upstream never answers', async () => {
    const { edge } = await setup(() => {}, { upstreamTimeoutMs: 150 });
    const r = await request(`${edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(r.statusCode).toBe(504);
    expect((await r.body.json()) as unknown).toMatchObject({ error: { code: 'upstream_timeout' } });
  });

  it('closes the upstream request when the client goes away mid-stream', async () => {
    let upstreamClosed = false;
    const { edge, rec } = await setup((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const t = setInterval(() => res.write('data: {"done":false}\n\n'), 10);
      res.on('close', () => {
        clearInterval(t);
        upstreamClosed = true;
      });
      req.resume();
    });
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${edge.url}/smallest/waves/v1/tts/live`, {
        method: 'POST',
        headers: { authorization: 'Bearer good', 'content-type': 'application/json' },
      });
      req.on('response', (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (e) => (e.message.includes('socket hang up') || e.message.includes('aborted') ? undefined : reject(e)));
      req.end('{"text":"hi","voice_id":"magnus"}');
    });
    await until(() => upstreamClosed, 5000, 'upstream close');
    await until(() => rec.exchanges[0]?.ends.length === 1);
    expect(rec.exchanges[0]!.ends).toEqual([{ status: 200, error: 'client_aborted' }]);
  });

  it('keeps proxying when the observer throws', async () => {
    const upstream = await startUpstream((_q, s) => s.end('fine'));
    const edge = await startEdge({
      host: '127.0.0.1',
      port: 0,
      source: new StaticSnapshotSource((await import('./helpers.ts')).snapshotFor(upstream.url)),
      authorizer: new TestAuthorizer(),
      observe: () => ({
        requestChunk: () => { throw new Error('x'); },
        responseStart: () => { throw new Error('x'); },
        responseChunk: () => { throw new Error('x'); },
        clientMessage: () => { throw new Error('x'); },
        upstreamMessage: () => { throw new Error('x'); },
        end: () => { throw new Error('x'); },
      }),
    });
    cleanups.push(() => upstream.close(), () => edge.close());
    const r = await request(`${edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('fine');
    const throwingFactory = await startEdge({
      host: '127.0.0.1',
      port: 0,
      source: new StaticSnapshotSource((await import('./helpers.ts')).snapshotFor(upstream.url)),
      authorizer: new TestAuthorizer(),
      observe: () => { throw new Error('factory'); },
    });
    cleanups.push(() => throwingFactory.close());
    const r2 = await request(`${throwingFactory.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(await r2.body.text()).toBe('fine');
  });
});
