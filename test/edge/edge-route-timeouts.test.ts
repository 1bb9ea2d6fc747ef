/**
 * The edge's REST route timeout runs as Envoy's route `timeout` does: from the end of the request
 * body, not from arrival. A slow upload therefore does not eat into the provider's time.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { readBody, startTestEdge, startUpstream, until } from './helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const ROUTE_TIMEOUT_MS = 400;
const BODY_CHUNKS = 6;
const CHUNK_EVERY_MS = 100;

/** Sends the body in chunks over BODY_CHUNKS × CHUNK_EVERY_MS ms; resolves with the answer. */
function slowPost(url: string, contentType: string, chunk: string): Promise<{ status: number; body: string; bodyEndedAt: number }> {
  return new Promise((resolve, reject) => {
    let bodyEndedAt = 0;
    const req = http.request(url, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': contentType } });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, bodyEndedAt }));
    });
    let sent = 0;
    const tick = setInterval(() => {
      req.write(chunk);
      if (++sent === BODY_CHUNKS) {
        clearInterval(tick);
        req.end(() => (bodyEndedAt = Date.now()));
      }
    }, CHUNK_EVERY_MS);
  });
}

async function setup(answerAfterBodyMs: number) {
  const upstream = await startUpstream((req, res) => {
    void readBody(req).then(() => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      }, answerAfterBodyMs);
    });
  });
  const t = await startTestEdge(upstream.url, { upstreamTimeoutMs: ROUTE_TIMEOUT_MS });
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return t;
}

// One route whose body goes straight upstream (an audio upload), one whose body the decision reads
// first (TTS JSON): the timer must start at the end of the body on both paths.
const ROUTES = [
  { name: 'STT upload', path: '/smallest/waves/v1/pulse/get_text', type: 'audio/wav', chunk: 'RIFF0000' },
  { name: 'TTS JSON', path: '/smallest/waves/v1/lightning-v3.1/get_speech', type: 'application/json', chunk: ' ' },
];

describe.each(ROUTES)('edge REST route timeout on a $name route (from the end of the request body)', (route) => {
  it(`succeeds when the upstream answers within the timeout after a body slower than the timeout`, async () => {
    const { edge, rec } = await setup(200);
    const started = Date.now();
    const r = await slowPost(`${edge.url}${route.path}`, route.type, route.chunk);
    // The exchange outlived the route timeout measured from arrival: a timer from arrival would have cut it.
    expect(Date.now() - started).toBeGreaterThan(ROUTE_TIMEOUT_MS + 200);
    expect(r.status).toBe(200);
    expect(r.body).toBe('{"ok":true}');
    await until(() => rec.exchanges[0]?.ends.length === 1, 2000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 200, endedBy: 'upstream' });
  });

  it('answers 504 upstream_timeout when the upstream answers after the timeout', async () => {
    const { edge, rec } = await setup(ROUTE_TIMEOUT_MS + 400);
    const r = await slowPost(`${edge.url}${route.path}`, route.type, route.chunk);
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'upstream_timeout' } });
    // Not before the timeout counted from the end of the body.
    expect(Date.now() - r.bodyEndedAt).toBeGreaterThanOrEqual(ROUTE_TIMEOUT_MS - 50);
    await until(() => rec.exchanges[0]?.ends.length === 1, 2000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 504, error: 'upstream_timeout' });
  });
});
