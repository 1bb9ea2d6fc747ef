/**
 * Issue 11 point 4, data plane: a request with a gateway-issued service key, through the embedded
 * edge with the real authorizer and usage observer. The provider receives the account's key and
 * never the caller's; the span's user is `service:<name>` and its teams the store's; an unknown
 * key is 401; an open session ends (1008) when its key leaves the snapshot. The key appears in no
 * log line, span, answer or upstream request.
 */
import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { newServiceKey } from '../../extproc/core/control/service-key.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { accountKeys, loadTestSnapshot, makeKey } from '../authz/fixtures.ts';
import { closed, opened, readBody, startUpstream, until, type Upstream } from './helpers.ts';

interface Seen {
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body?: string;
}

const keys = accountKeys();
const key = newServiceKey();
const unknown = newServiceKey();
const seen: Seen[] = [];
const spans: UsageSpan[] = [];
const logs: string[] = [];
let upstream: Upstream;
let edge: EdgeHandle;
let source: StaticSnapshotSource;
let base: Snapshot;

beforeAll(async () => {
  upstream = await startUpstream(
    async (req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers, body: (await readBody(req)).toString() });
      res.writeHead(200, { 'content-type': 'audio/wav' }).end(Buffer.from('RIFF....WAVE'));
    },
    (ws, req) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      ws.on('message', () => {});
    },
  );
  const loaded = await loadTestSnapshot([{ issuer: 'https://idp.test/edge-service-key', keys: [await makeKey('ES256')] }], keys);
  // service:ivr is no collaborator itself: the TTS account admits it by name, the STT account
  // through team voice, which only the control plane's membership gives it.
  const accounts = new Map(loaded.accounts);
  const tts = loaded.accounts.get('smallest-tts')!;
  accounts.set('smallest-tts', { ...tts, users: new Set([...tts.users, 'service:ivr']) });
  base = {
    ...loaded,
    providers: new Map([['smallest', { name: 'smallest', upstream: upstream.url }]]),
    accounts,
    serviceKeys: new Map([[key.hash, { subject: 'service:ivr', notAfterMs: null }]]),
    teamMembers: new Map([['service:ivr', ['voice']]]),
  };
  source = new StaticSnapshotSource(base);
  const sink: SpanSink = { publish: (s) => void spans.push(s), flush: async () => {}, close: async () => {} };
  const logger = pino(
    { level: 'trace' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString());
        done();
      },
    }),
  );
  edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), observe: createUsageObserverFactory({ sink }), logger });
});
afterAll(async () => {
  await edge?.close();
  await upstream?.close();
});

/** Everything the gateway wrote or sent anywhere a key could leak to. */
function everything(): string {
  return JSON.stringify({ seen, spans, logs });
}

describe('a service key through the embedded edge', () => {
  it('passes with the account key injected, the caller key stripped, and a span for service:ivr', async () => {
    const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.plaintext}`, 'content-type': 'application/json', 'x-api-key': key.plaintext },
      body: JSON.stringify({ text: 'hello', voice_id: 'magnus' }),
    });
    expect(r.statusCode).toBe(200);
    await r.body.dump();
    const up = seen.at(-1)!;
    expect(up.url).toBe('/waves/v1/lightning-v3.1/get_speech');
    expect(up.headers.authorization).toBe(`Bearer ${keys.tts}`);
    expect(up.headers['x-api-key']).toBeUndefined();
    await until(() => spans.length === 1, 5000, 'span');
    expect(spans[0]).toMatchObject({ user: 'service:ivr', teams: ['voice'], account: 'smallest-tts', decision: 'allow', status: 200 });
    expect(everything()).not.toContain(key.plaintext);
  });

  it('on ?token= of a WebSocket (and offered as a subprotocol): the key never reaches the provider, and a revoked key ends the session', async () => {
    const ws = new WebSocket(`${edge.url.replace(/^http/, 'ws')}/smallest/waves/v1/pulse/get_text?language=en&token=${key.plaintext}`, ['bearer', key.plaintext], {
      perMessageDeflate: false,
    });
    const end = closed(ws);
    await opened(ws);
    const up = seen.at(-1)!;
    expect(up.url).toBe('/waves/v1/pulse/get_text?language=en');
    expect(up.headers.authorization).toBe(`Bearer ${keys.stt}`);
    // A key offered as a subprotocol (browsers' `bearer, <credential>`) is not offered upstream;
    // the marker is echoed so the browser's handshake completes.
    expect(up.headers['sec-websocket-protocol']).toBeUndefined();
    expect(ws.protocol).toBe('bearer');
    // The key leaves the next snapshot (revoked): the session is ended by the re-check.
    source.swap({ ...base, version: base.version + 1, serviceKeys: new Map() });
    const c = await end;
    expect(c).toEqual({ code: 1008, reason: 'token expired' });
    await until(() => spans.some((s) => s.routeKind === 'websocket'), 5000, 'websocket span');
    const span = spans.find((s) => s.routeKind === 'websocket')!;
    expect(span).toMatchObject({ user: 'service:ivr', teams: ['voice'], account: 'smallest-stt', error: 'token_expired' });
    // The capture is live: the edge logged the ending, without the key.
    expect(logs.some((l) => l.includes('sessions no longer entitled were ended'))).toBe(true);
    expect(everything()).not.toContain(key.plaintext);
    source.swap({ ...base, version: base.version + 2 });
  });

  it('an unknown key is 401 invalid_service_key, and nothing reaches the provider', async () => {
    const before = seen.length;
    const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech?token=${unknown.plaintext}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello', voice_id: 'magnus' }),
    });
    const body = await r.body.text();
    expect(r.statusCode).toBe(401);
    expect(JSON.parse(body)).toMatchObject({ error: { code: 'invalid_service_key' } });
    expect(r.headers['www-authenticate']).toContain('invalid_service_key');
    expect(body).not.toContain(unknown.plaintext);
    expect(seen.length).toBe(before);
    await until(() => spans.some((s) => s.decision === 'deny'), 5000, 'deny span');
    expect(everything()).not.toContain(unknown.plaintext);
    expect(everything()).not.toContain(unknown.plaintext.slice(3, 20));
  });
});
