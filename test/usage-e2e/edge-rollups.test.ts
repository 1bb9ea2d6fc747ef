/**
 * Real traffic through the embedded edge (real decision, example config) to the simulator, spans
 * through the real NATS JetStream to the in-process aggregator and into a fresh PostgreSQL
 * database: the roll-ups must equal exactly what was sent, and no span may carry a credential.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import WebSocket from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createUsagePipeline, type UsagePipeline } from '../../extproc/main/usage-pipeline.ts';
import { decodeSpan, type UsageSpan } from '../../extproc/core/usage/span.ts';
import { queryUsage } from '../../extproc/adapters/postgres/usage-query.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { eventually, freshDatabase, silentLogger, uniqueName, wav } from '../usage/helpers.ts';
import { exampleKeys, exampleSnapshot, NATS_URL, textOf } from './helpers.ts';

const keys = exampleKeys();
const stream = uniqueName('VGE2E_SPANS');
const subjectPrefix = `${stream.toLowerCase()}.spans`;
const tmp = mkdtempSync(join(tmpdir(), 'vg-usage-e2e-'));
// Credentials a caller might send besides its JWT; none may reach a span.
const CALLER_API_KEY = 'sk_caller_own_key_do_not_forward_91f3';
const CALLER_COOKIE = 'vg_session=cookie_secret_5d2c';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let sim: SimulatorHandle;
let snapshot: Snapshot;
let pipeline: UsagePipeline;
let edge: EdgeHandle;
let nc: NatsConnection;
let sub: Subscription;
const raw: string[] = [];
const tokens: Record<'alice' | 'bob' | 'mallory', string> = { alice: '', bob: '', mallory: '' };

beforeAll(async () => {
  db = await freshDatabase();
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 4 }, { key: keys.stt, units: 4 }] });
  snapshot = await exampleSnapshot(sim.url);
  tokens.alice = await signDevToken(snapshot, { user: 'alice', teams: ['voice'] });
  tokens.bob = await signDevToken(snapshot, { user: 'bob' });
  tokens.mallory = await signDevToken(snapshot, { user: 'mallory' });
  // Every serialized span as it travels on NATS (JetStream publishes are plain subjects too).
  nc = await connect({ servers: NATS_URL });
  sub = nc.subscribe(`${subjectPrefix}.>`);
  void (async () => {
    for await (const m of sub) raw.push(m.string());
  })();
  await nc.flush();
  const source = new StaticSnapshotSource(snapshot);
  pipeline = await createUsagePipeline({
    natsUrl: NATS_URL,
    databaseUrl: db.url,
    spoolDir: tmp,
    logger: silentLogger,
    stream,
    subjectPrefix,
    durable: uniqueName('agg'),
  });
  edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), observe: pipeline.observe });
});

afterAll(async () => {
  await edge?.close();
  await pipeline?.close();
  await sim?.close();
  sub?.unsubscribe();
  if (nc) {
    await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
  await db?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

const wsUrl = (path: string) => `${edge.url.replace(/^http/, 'ws')}${path}`;

async function ttsRest(path: string, token: string, body: Record<string, unknown>): Promise<number> {
  const r = await request(`${edge.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'x-api-key': CALLER_API_KEY,
      cookie: CALLER_COOKIE,
      traceparent: TRACEPARENT,
    },
    body: JSON.stringify({ voice_id: 'magnus', ...body }),
  });
  await r.body.arrayBuffer();
  return r.statusCode;
}

/** One TTS WebSocket session: each entry is sent, and entries marked `await` wait for `complete`. */
async function ttsSocket(messages: Array<{ msg: Record<string, unknown>; awaitComplete: boolean }>): Promise<number> {
  const ws = new WebSocket(wsUrl(`/smallest/waves/v1/tts/live?token=${tokens.alice}`), { headers: { cookie: CALLER_COOKIE } });
  const completes: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as { status: string; message?: string };
    if (m.status === 'error') completes.shift()?.reject(new Error(`TTS socket error: ${m.message}`));
    if (m.status === 'complete') completes.shift()?.resolve();
  });
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
  for (const { msg, awaitComplete } of messages) {
    const done = awaitComplete ? new Promise<void>((resolve, reject) => completes.push({ resolve, reject })) : undefined;
    ws.send(JSON.stringify({ voice_id: 'magnus', complete_backoff_ms: 0, ...msg }));
    await done;
  }
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  ws.close(1000);
  return closed;
}

/** One STT WebSocket session sending `bytes` of linear16 PCM at `rate`, then close_stream. */
async function sttSocket(rate: number, bytes: number): Promise<{ code: number; last: boolean }> {
  const ws = new WebSocket(wsUrl(`/smallest/waves/v1/stt/live?model=pulse&encoding=linear16&sample_rate=${rate}&language=en`), {
    headers: { authorization: `Bearer ${tokens.bob}`, 'x-api-key': CALLER_API_KEY },
  });
  let last = false;
  ws.on('message', (d) => {
    if ((JSON.parse(d.toString()) as { is_last?: boolean }).is_last) last = true;
  });
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
  const frame = 3200;
  for (let off = 0; off < bytes; off += frame) ws.send(Buffer.alloc(Math.min(frame, bytes - off), 1), { binary: true });
  ws.send(JSON.stringify({ type: 'close_stream' }));
  const code = await new Promise<number>((r) => ws.once('close', (c) => r(c)));
  return { code, last };
}

describe('usage end to end: edge → NATS → aggregator → PostgreSQL', () => {
  it('roll-ups per user, team, model and account equal exactly what was sent', async () => {
    // alice (team voice), TTS: 120 + 80 (REST) + 50 (SSE) + 100 + 50 (one WebSocket) = 400 characters.
    expect(await ttsRest('/smallest/waves/v1/lightning-v3.1/get_speech', tokens.alice, { text: textOf(120), output_format: 'wav' })).toBe(200);
    expect(await ttsRest('/smallest/waves/v1/tts', tokens.alice, { text: textOf(80), model: 'lightning_v3.1' })).toBe(200);
    expect(await ttsRest('/smallest/waves/v1/lightning-v3.1/stream', tokens.alice, { text: textOf(50) })).toBe(200);
    const ttsClose = await ttsSocket([
      { msg: { text: textOf(60), continue: true }, awaitComplete: false },
      { msg: { text: textOf(40), flush: true }, awaitComplete: true },
      { msg: { text: ' ' }, awaitComplete: false }, // Pipecat's keepalive: not speech
      { msg: { text: textOf(50) }, awaitComplete: true },
      { msg: { text: '', flush: true }, awaitComplete: false },
    ]);
    expect(ttsClose).toBe(1000);

    // bob (no team), STT: 3 s streamed (16 kHz linear16 = 32,000 B/s) + a 6 s WAV over REST.
    const stt = await sttSocket(16_000, 96_000);
    expect(stt).toEqual({ code: 1000, last: true });
    const upload = await request(`${edge.url}/smallest/waves/v1/pulse/get_text?language=en`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.bob}`, 'content-type': 'audio/wav', cookie: CALLER_COOKIE },
      body: Buffer.from(wav(16_000, 16, 192_000)),
    });
    expect(upload.statusCode).toBe(200);
    expect(((await upload.body.json()) as { status: string }).status).toBe('success');

    // mallory has no entitlement: denied, counted as a request and an error, costs nothing.
    expect(await ttsRest('/smallest/waves/v1/lightning-v3.1/get_speech', tokens.mallory, { text: textOf(30) })).toBe(403);

    await eventually(async () => {
      const r = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_spans').catch(() => ({ rows: [{ n: '0' }] }));
      return Number(r.rows[0]!.n) === 7;
    }, 20_000, 'seven spans in PostgreSQL');
    await eventually(() => raw.length === 7, 5_000, 'seven spans seen on NATS');

    const since = '2000-01-01';
    // Costs from the example config: lightning 0.0195 per 1K chars; pulse 0.0035/min REST, 0.006/min streaming.
    // alice: 400 × 0.0195 / 1000 = 0.0078. bob: 3/60 × 0.006 + 6/60 × 0.0035 = 0.0003 + 0.00035 = 0.00065.
    expect(await queryUsage(db.pool, 'user', since)).toEqual([
      { key: 'alice', requests: 4, errors: 0, characters: 400, audioSeconds: '0', costUsd: '0.0078' },
      { key: 'bob', requests: 2, errors: 0, characters: 0, audioSeconds: '9', costUsd: '0.00065' },
      { key: 'mallory', requests: 1, errors: 1, characters: 0, audioSeconds: '0', costUsd: '0' },
    ]);
    expect(await queryUsage(db.pool, 'team', since)).toEqual([
      { key: 'voice', requests: 4, errors: 0, characters: 400, audioSeconds: '0', costUsd: '0.0078' },
      { key: '', requests: 3, errors: 1, characters: 0, audioSeconds: '9', costUsd: '0.00065' },
    ]);
    expect(await queryUsage(db.pool, 'model', since)).toEqual([
      { key: 'smallest/lightning-v3.1', requests: 5, errors: 1, characters: 400, audioSeconds: '0', costUsd: '0.0078' },
      { key: 'smallest/pulse', requests: 2, errors: 0, characters: 0, audioSeconds: '9', costUsd: '0.00065' },
    ]);
    // The denial names the model's account (the decision resolved the model before refusing).
    expect(await queryUsage(db.pool, 'account', since)).toEqual([
      { key: 'smallest-tts', requests: 5, errors: 1, characters: 400, audioSeconds: '0', costUsd: '0.0078' },
      { key: 'smallest-stt', requests: 2, errors: 0, characters: 0, audioSeconds: '9', costUsd: '0.00065' },
    ]);

    // Each span on the wire carries its own exact quantities and cost.
    const spans = raw.map((t) => decodeSpan(t));
    const one = (user: string, routeKind: string, modelType: string) => {
      const found = spans.filter((s) => s.user === user && s.routeKind === routeKind && s.modelType === modelType);
      expect(found.length, `${user} ${routeKind} ${modelType}`).toBeGreaterThan(0);
      return found[0]!;
    };
    // Bytes as relayed: 3 s of PCM plus the 23-byte close_stream message; the 6 s WAV with its 44-byte header.
    expect(one('bob', 'websocket', 'stt')).toMatchObject({ bytesIn: 96_000 + 23, model: 'pulse', account: 'smallest-stt', endpoint: 'stt.unified.ws' });
    expect(one('bob', 'websocket', 'stt').firstTranscriptMs).toBeGreaterThan(0);
    expect(one('bob', 'rest', 'stt')).toMatchObject({ bytesIn: 192_044, model: 'pulse', account: 'smallest-stt' });
    expect(one('alice', 'sse', 'tts').firstAudioMs).toBeGreaterThan(0);
    expect(one('alice', 'websocket', 'tts').firstAudioMs).toBeGreaterThan(0);
    expect(one('alice', 'sse', 'tts').providerRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(one('mallory', 'rest', 'tts')).toMatchObject({ decision: 'deny', bytesOut: 0 });
    const summary = (s: UsageSpan) => [s.user, s.routeKind, s.modelType, s.status, s.closeCode ?? null, s.characters ?? null, s.audioSeconds ?? null, s.costUsd, s.estimated];
    expect(spans.map(summary).sort()).toEqual(
      [
        ['alice', 'rest', 'tts', 200, null, 120, null, '0.00234', false],
        ['alice', 'rest', 'tts', 200, null, 80, null, '0.00156', false],
        ['alice', 'sse', 'tts', 200, null, 50, null, '0.000975', false],
        ['alice', 'websocket', 'tts', 101, 1000, 150, null, '0.002925', false],
        ['bob', 'websocket', 'stt', 101, 1000, null, 3, '0.0003', false],
        ['bob', 'rest', 'stt', 200, null, null, 6, '0.00035', false],
        ['mallory', 'rest', 'tts', 403, null, null, null, '0', false],
      ].sort(),
    );
    // The caller's traceparent is continued on the REST spans that sent it.
    const traced = spans.filter((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736');
    expect(traced).toHaveLength(4);
    expect(new Set(traced.map((s) => s.parentSpanId))).toEqual(new Set(['00f067aa0ba902b7']));
    expect(new Set(spans.map((s) => s.spanId)).size).toBe(7);
  });

  it('no span on NATS carries a credential: JWT, provider key, caller x-api-key or cookie', () => {
    expect(raw).toHaveLength(7);
    const secrets = {
      aliceJwt: tokens.alice,
      bobJwt: tokens.bob,
      malloryJwt: tokens.mallory,
      // A JWT's signature alone is as good as the JWT for matching a leak that was cut short.
      aliceJwtSignature: tokens.alice.split('.')[2]!,
      ttsProviderKey: keys.tts,
      sttProviderKey: keys.stt,
      callerApiKey: CALLER_API_KEY,
      cookie: CALLER_COOKIE,
      cookieValue: CALLER_COOKIE.split('=')[1]!,
    };
    const text = raw.join('\n');
    for (const [name, secret] of Object.entries(secrets)) {
      expect(secret.length, name).toBeGreaterThan(8);
      expect(text.includes(secret), `${name} found in a span`).toBe(false);
    }
    // Nor the names of credential fields or a Bearer value.
    expect(text).not.toMatch(/bearer|authorization|x-api-key|cookie|"token"/i);
  });
});
