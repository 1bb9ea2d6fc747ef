/**
 * The edge takes its route and idle timeouts from the endpoint catalogue (the facts
 * test/envoy-config/catalogue-conformance.test.ts checks against envoy.yaml), not from constants of
 * its own: with every catalogue bound scaled down 1000× (120 s → 120 ms, 300 s → 300 ms) and no
 * override passed to the edge, the exchanges end exactly where the scaled catalogue says.
 */
import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { closed, readBody, startTestEdge, startUpstream, until } from './helpers.ts';

vi.mock('../../extproc/core/catalogue/endpoints.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../extproc/core/catalogue/endpoints.ts')>();
  return {
    ...real,
    routeTimeouts: (method: string, path: string) => {
      const t = real.routeTimeouts(method, path);
      return { routeTimeoutMs: t.routeTimeoutMs / 1000, idleTimeoutMs: t.idleTimeoutMs / 1000 };
    },
  };
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(onRequest: Parameters<typeof startUpstream>[0], onSocket: Parameters<typeof startUpstream>[1] = () => {}) {
  const upstream = await startUpstream(onRequest, onSocket);
  const t = await startTestEdge(upstream.url);
  cleanups.push(() => upstream.close(), () => t.edge.close());
  return t;
}

function post(url: string, body: string): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' } });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body: text, complete: res.complete }));
    });
    req.end(body);
  });
}

const TTS = '{"text":"hi","voice_id":"magnus"}';

describe('the edge bounds exchanges with the catalogue\'s route facts', () => {
  it('REST (tts.sync, 120 s → 120 ms): a head later than the route timeout is a 504', async () => {
    const { edge } = await setup((req, res) => void readBody(req).then(() => setTimeout(() => res.end('late'), 400)));
    const r = await post(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, TTS);
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'upstream_timeout' } });
  });

  it('SSE (tts.sse, timeout 0s, idle 300 s → 300 ms): no route timeout, a busy stream lives, a silent one is cut', async () => {
    const { edge, rec } = await setup((req, res) => {
      void readBody(req).then(() => {
        // A head later than the REST route timeout is fine on a stream route…
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.flushHeaders();
          let n = 0;
          // …and so is a stream longer than the idle bound, as long as it keeps moving.
          const t = setInterval(() => {
            res.write(`data: ${n}\n\n`);
            if (++n === 6) clearInterval(t);
          }, 100);
        }, 150);
      });
    });
    const started = Date.now();
    const r = await post(`${edge.url}/smallest/waves/v1/lightning-v3.1/stream`, TTS);
    expect(r.status).toBe(200);
    expect(r.body).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n');
    expect(r.complete).toBe(false);
    expect(Date.now() - started).toBeGreaterThan(750 + 250);
    await until(() => rec.exchanges[0]?.ends.length === 1, 2000, 'observer end');
    expect(rec.exchanges[0]!.ends[0]).toEqual({ status: 200, error: 'stream_idle_timeout' });
  });

  it('WebSocket (tts.ws, timeout 0s, idle 300 s → 300 ms): a silent session is closed at the idle bound', async () => {
    const { edge } = await setup(() => {}, () => {});
    const client = new WebSocket(`${edge.url.replace('http:', 'ws:')}/smallest/waves/v1/lightning-v3.1/get_speech/stream?token=good`);
    const opened = Date.now();
    const done = await closed(client);
    expect(done.code).toBe(1001);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(250);
    expect(Date.now() - opened).toBeLessThan(3000);
  });
});
