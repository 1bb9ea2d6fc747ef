/**
 * Browser callers, with a real browser: Debian's Chromium (driven by playwright-core) loads a page
 * from another origin than the gateway's and calls the embedded edge from it, as a web app would.
 * An admitted origin reads its 200, the provider's exposed ids and its denials; any other origin is
 * refused before a byte reaches the provider — including the preflight-free `text/plain` POST with
 * `?token=` that was served and billed while the page only saw "Failed to fetch", and WebSockets,
 * on which browsers enforce nothing themselves. Each case asserts what the page saw and what the
 * simulator received. Both decision modes (in process, over Envoy's ext_authz gRPC) are driven.
 *
 * Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). A missing browser
 * fails the suite with that instruction: a skipped browser suite would pass a change that breaks
 * browser callers.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import { startExtprocServer, type ExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { snapshotFor, TestAuthorizer } from '../edge/helpers.ts';
import { corsConfig } from '../../extproc/core/config/schema.ts';
import { compileCors } from '../../extproc/core/config/compile.ts';
import { AUTHZ_MODES, devTokens, EXAMPLES_DIR, exampleConfigText, providerKeys, type AuthzMode, type Tokens } from '../e2e/stack.ts';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

/** A page of a web app, served from its own origin (another port than the gateway's). */
async function startPageServer(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>voice app</title><p>voice app</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The example config with the simulator as upstream and `origin` as the one admitted browser origin. */
async function snapshotAdmitting(upstream: string, origin: string): Promise<Snapshot> {
  const doc = parse(await exampleConfigText(upstream)) as Record<string, unknown>;
  doc['cors'] = { ...(doc['cors'] as Record<string, unknown> | undefined), allowed_origins: [origin] };
  return loadSnapshotFromText(stringify(doc), { origin: 'test:browser-cors', baseDir: EXAMPLES_DIR });
}

/** What a page's `fetch` came back with, or the error the browser gave it instead. */
type FetchOutcome =
  | { ok: true; status: number; headers: Record<string, string | null>; bytes: number; json: unknown }
  | { ok: false; error: string };

interface FetchArgs {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
  read: string[];
}

/** Runs `fetch` inside the page (the page's origin, the browser's CORS rules). */
function pageFetch(page: Page, args: FetchArgs): Promise<FetchOutcome> {
  return page.evaluate(async (a: FetchArgs): Promise<FetchOutcome> => {
    try {
      const res = await fetch(a.url, { method: a.method, headers: a.headers, ...(a.body !== undefined ? { body: a.body } : {}) });
      const buf = new Uint8Array(await res.arrayBuffer());
      let json: unknown = null;
      if ((res.headers.get('content-type') ?? '').includes('json')) json = JSON.parse(new TextDecoder().decode(buf));
      const headers: Record<string, string | null> = {};
      for (const name of a.read) headers[name] = res.headers.get(name);
      return { ok: true, status: res.status, headers, bytes: buf.byteLength, json };
    } catch (err) {
      return { ok: false, error: String(err) };
    }
  }, args);
}

/** What a page's WebSocket did: opened and got a first message, or closed without opening. */
type SocketOutcome = { opened: boolean; firstMessage: string | null; closeCode: number | null };

/** The browser WebSocket as the page sees it (no DOM lib in this project's types). */
interface PageSocket {
  onopen: (() => void) | null;
  onmessage: ((e: { data: unknown }) => void) | null;
  onclose: ((e: { code: number }) => void) | null;
  onerror: (() => void) | null;
  send(data: string): void;
  close(): void;
}

function pageWebSocket(page: Page, url: string, frame: string): Promise<SocketOutcome> {
  return page.evaluate(
    ({ url, frame }) =>
      new Promise<SocketOutcome>((resolve) => {
        const Ctor = (globalThis as unknown as { WebSocket: new (u: string) => PageSocket }).WebSocket;
        const ws = new Ctor(url);
        const out: SocketOutcome = { opened: false, firstMessage: null, closeCode: null };
        const timer = setTimeout(() => (ws.close(), resolve(out)), 10_000);
        ws.onopen = () => {
          out.opened = true;
          ws.send(frame);
        };
        ws.onmessage = (e) => {
          if (out.firstMessage !== null) return;
          out.firstMessage = String(e.data);
          ws.close();
        };
        ws.onerror = () => {};
        ws.onclose = (e) => {
          clearTimeout(timer);
          out.closeCode = e.code;
          resolve(out);
        };
      }),
    { url, frame },
  );
}

const TTS_PATH = '/smallest/waves/v1/lightning-v3.1/get_speech';
const TTS_WS_PATH = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';
const STT_WS_PATH = '/smallest/waves/v1/pulse/get_text';

describe('browser callers through the edge, in Chromium', () => {
  let browser: Browser;
  let context: BrowserContext;
  let allowedPage: Page;
  let otherPage: Page;
  let allowed: Awaited<ReturnType<typeof startPageServer>>;
  let other: Awaited<ReturnType<typeof startPageServer>>;

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (bash .ci/run installs it)`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    context = await browser.newContext();
    allowed = await startPageServer();
    other = await startPageServer();
    allowedPage = await context.newPage();
    otherPage = await context.newPage();
    await allowedPage.goto(`${allowed.origin}/`);
    await otherPage.goto(`${other.origin}/`);
  });
  afterAll(async () => {
    await browser?.close();
    await allowed?.close();
    await other?.close();
  });

  describe.each(AUTHZ_MODES)('decision %s', (mode: AuthzMode) => {
    let sim: SimulatorHandle;
    let edge: EdgeHandle;
    let extproc: ExtprocServer | undefined;
    let client: ReturnType<typeof createGrpcAuthorizer> | undefined;
    let tokens: Tokens;

    beforeAll(async () => {
      const keys = providerKeys(await snapshotAdmitting('http://127.0.0.1:7070', allowed.origin));
      sim = await startSimulator({
        host: '127.0.0.1',
        port: 0,
        profile: 'instant',
        accounts: [
          { key: keys.tts, units: 4 },
          { key: keys.stt, units: 4 },
        ],
      });
      const snapshot = await snapshotAdmitting(sim.url, allowed.origin);
      const source = new StaticSnapshotSource(snapshot);
      const inproc = createAuthorizer(source);
      if (mode === 'grpc') {
        extproc = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: inproc, source, logger: pino({ level: 'silent' }) });
        client = createGrpcAuthorizer(`127.0.0.1:${extproc.port}`, { timeoutMs: 5_000 });
      }
      edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client ?? inproc });
      tokens = await devTokens(snapshot);
    });
    afterAll(async () => {
      await edge?.close();
      client?.close();
      await extproc?.close(0);
      await sim?.close();
    });

    /** What reached the provider during `act`. */
    async function received<T>(act: () => Promise<T>): Promise<{ result: T; upstream: ReturnType<SimulatorHandle['requests']> }> {
      const before = sim.requests().length;
      const result = await act();
      // A request the edge forwarded has reached the simulator by the time the page has its answer;
      // a short wait also catches one that would arrive late.
      await new Promise((r) => setTimeout(r, 100));
      return { result, upstream: sim.requests().slice(before) };
    }

    const speech = (requestId: string) => JSON.stringify({ text: 'Hello from a browser', voice_id: 'magnus', output_format: 'wav', request_id: requestId });

    it('an admitted page: fetch with Authorization gets the audio and reads the exposed provider ids', async () => {
      const { result, upstream } = await received(() =>
        pageFetch(allowedPage, {
          url: `${edge.url}${TTS_PATH}`,
          method: 'POST',
          headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
          body: speech('browser-req-1'),
          read: ['x-external-request-id', 'x-request-id', 'content-type'],
        }),
      );
      expect(result).toMatchObject({ ok: true, status: 200 });
      if (!result.ok) return;
      expect(result.headers['x-external-request-id']).toBe('browser-req-1');
      expect(result.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      // Not exposed: a page reads only the safelisted and the listed fields.
      expect(result.bytes).toBeGreaterThan(44);
      // The preflight was answered by the gateway; only the POST reached the provider, with its key.
      expect(upstream.map((r) => r.method)).toEqual(['POST']);
      expect(upstream[0]?.headers['authorization']).toMatch(/^Bearer sk_/);
      expect(upstream[0]?.headers['origin']).toBe(allowed.origin);
    });

    it('an admitted page reads the gateway\'s denials too (401 without a valid token, 403 not entitled)', async () => {
      const bad = await pageFetch(allowedPage, {
        url: `${edge.url}${TTS_PATH}`,
        method: 'POST',
        headers: { authorization: 'Bearer not.a.jwt', 'content-type': 'application/json' },
        body: speech('browser-req-2'),
        read: [],
      });
      expect(bad).toMatchObject({ ok: true, status: 401, json: { error: { code: 'malformed_token' } } });
      const { result, upstream } = await received(() =>
        pageFetch(allowedPage, {
          url: `${edge.url}${TTS_PATH}`,
          method: 'POST',
          headers: { authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' },
          body: speech('browser-req-3'),
          read: [],
        }),
      );
      expect(result).toMatchObject({ ok: true, status: 403, json: { error: { code: 'not_entitled' } } });
      expect(upstream).toEqual([]);
    });

    it('another origin: the same fetch fails in the page and nothing reaches the provider', async () => {
      const { result, upstream } = await received(() =>
        pageFetch(otherPage, {
          url: `${edge.url}${TTS_PATH}`,
          method: 'POST',
          headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
          body: speech('browser-req-4'),
          read: [],
        }),
      );
      expect(result).toEqual({ ok: false, error: expect.stringContaining('Failed to fetch') });
      expect(upstream).toEqual([]);
    });

    it('another origin: a preflight-free text/plain POST with ?token= is not forwarded, so not billed', async () => {
      const { result, upstream } = await received(() =>
        pageFetch(otherPage, {
          url: `${edge.url}${TTS_PATH}?token=${tokens.alice}`,
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: speech('browser-req-5'),
          read: [],
        }),
      );
      expect(result).toEqual({ ok: false, error: expect.stringContaining('Failed to fetch') });
      expect(upstream).toEqual([]);
    });

    it('an admitted page: a WebSocket with ?token= opens and synthesises; the provider never sees the token', async () => {
      const { result, upstream } = await received(() =>
        pageWebSocket(allowedPage, `${edge.url.replace(/^http/, 'ws')}${TTS_WS_PATH}?token=${tokens.alice}`, speech('browser-ws-1')),
      );
      expect(result.opened).toBe(true);
      expect(JSON.parse(result.firstMessage ?? '{}')).toMatchObject({ status: 'chunk' });
      expect(upstream.map((r) => ({ upgrade: r.upgrade, url: r.url }))).toEqual([{ upgrade: true, url: '/waves/v1/lightning-v3.1/get_speech/stream' }]);
    });

    it.each([
      ['TTS', TTS_WS_PATH],
      ['STT', STT_WS_PATH],
    ])('another origin: a %s WebSocket with ?token= never opens and no upgrade reaches the provider', async (_kind, path) => {
      const { result, upstream } = await received(() =>
        pageWebSocket(otherPage, `${edge.url.replace(/^http/, 'ws')}${path}?token=${tokens.alice}`, speech('browser-ws-2')),
      );
      expect(result).toEqual({ opened: false, firstMessage: null, closeCode: 1006 });
      expect(upstream).toEqual([]);
    });
  });
});

/** One request with node:http, which (unlike fetch) lets a test set `Origin` as a browser would. */
function raw(url: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('browser callers on the wire (no browser needed)', () => {
  const APP = 'http://app.test:5173';
  let sim: SimulatorHandle;
  let edge: EdgeHandle;
  let tokens: Tokens;
  beforeAll(async () => {
    const keys = providerKeys(await snapshotAdmitting('http://127.0.0.1:7070', APP));
    sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 4 }, { key: keys.stt, units: 4 }] });
    const snapshot = await snapshotAdmitting(sim.url, APP);
    const source = new StaticSnapshotSource(snapshot);
    edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source) });
    tokens = await devTokens(snapshot);
  });
  afterAll(async () => {
    await edge?.close();
    await sim?.close();
  });
  const body = JSON.stringify({ text: 'hi', voice_id: 'magnus' });
  const preflight = (origin: string) => ({ origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' });

  it('an admitted preflight: 204 with the allow lists, no body, nothing forwarded', async () => {
    const before = sim.requests().length;
    const r = await raw(`${edge.url}${TTS_PATH}`, 'OPTIONS', preflight(APP));
    expect(r.status).toBe(204);
    expect(r.text).toBe('');
    expect(r.headers['content-length']).toBeUndefined();
    expect(r.headers).toMatchObject({
      'access-control-allow-origin': APP,
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'authorization, content-type, x-request-id, traceparent, tracestate',
      'access-control-max-age': '600',
      vary: 'origin',
    });
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    expect(sim.requests().length).toBe(before);
  });

  it('a refused preflight: 403 origin_not_allowed without allow headers', async () => {
    const r = await raw(`${edge.url}${TTS_PATH}`, 'OPTIONS', preflight('http://evil.test'));
    expect(r.status).toBe(403);
    expect(JSON.parse(r.text)).toEqual({ error: { code: 'origin_not_allowed', message: expect.stringContaining('http://evil.test') } });
    expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });

  it('requests without Origin get exactly what they got before: no CORS fields', async () => {
    const r = await raw(`${edge.url}${TTS_PATH}`, 'POST', { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' }, body);
    expect(r.status).toBe(200);
    expect(Object.keys(r.headers).filter((h) => h.startsWith('access-control-') || h === 'vary')).toEqual([]);
  });

  it('an admitted origin: the relayed 200 and the gateway\'s own 401 both carry the CORS fields', async () => {
    const ok = await raw(`${edge.url}${TTS_PATH}`, 'POST', { origin: APP, authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' }, body);
    expect(ok.status).toBe(200);
    expect(ok.headers).toMatchObject({ 'access-control-allow-origin': APP, vary: 'origin' });
    expect(ok.headers['access-control-expose-headers']).toContain('x-external-request-id');
    const denied = await raw(`${edge.url}${TTS_PATH}`, 'POST', { origin: APP, 'content-type': 'application/json' }, body);
    expect(denied.status).toBe(401);
    expect(denied.headers).toMatchObject({ 'access-control-allow-origin': APP, 'www-authenticate': expect.stringContaining('Bearer') });
  });

  it('the provider\'s own Access-Control-* fields are replaced by the gateway\'s, its Vary kept', async () => {
    const upstream = http.createServer((_req, res) => {
      res.writeHead(200, { 'access-control-allow-origin': '*', 'access-control-allow-credentials': 'true', vary: 'accept-encoding', 'content-type': 'audio/wav' });
      res.end('RIFF');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const source = new StaticSnapshotSource({
      ...snapshotFor(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`),
      cors: compileCors(corsConfig.parse({ allowed_origins: [APP] })),
    });
    const own = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: new TestAuthorizer() });
    try {
      const r = await raw(`${own.url}${TTS_PATH}`, 'POST', { origin: APP, authorization: 'Bearer good', 'content-type': 'application/json' }, body);
      expect(r.status).toBe(200);
      expect(r.headers['access-control-allow-origin']).toBe(APP);
      expect(r.headers['access-control-allow-credentials']).toBeUndefined();
      expect(r.headers['vary']).toBe('accept-encoding, origin');
    } finally {
      await own.close();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
  });
});
