/**
 * Through the edge with the real decision (createAuthorizer + the example config) to the
 * simulator of api.smallest.ai, in process and over gRPC.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, importJWK, type JWK } from 'jose';
import { pino } from 'pino';
import { request } from 'undici';
import WebSocket from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { loadSnapshotFromFile } from '../../extproc/adapters/files/config-file.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import { startExtprocServer, type ExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { recordingObserver } from './helpers.ts';

const CONFIG = new URL('../../examples/voicegate.yaml', import.meta.url).pathname;
const keyFile = (name: string) => readFile(new URL(`../../examples/dev/${name}`, import.meta.url), 'utf8').then((s) => s.trim());

let sim: SimulatorHandle;
let snapshot: Snapshot;
let ttsKey: string;
let aliceToken: string;
let malloryToken: string;

async function mint(sub: string, teams: string[]): Promise<string> {
  const jwk = JSON.parse(await keyFile('signing-key.jwk.json')) as JWK;
  const key = await importJWK(jwk, 'ES256');
  return new SignJWT({ teams })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid! })
    .setIssuer('https://voicegate.local/dev')
    .setAudience('voicegate')
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key);
}

beforeAll(async () => {
  ttsKey = await keyFile('smallest-tts.key');
  const sttKey = await keyFile('smallest-stt.key');
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: ttsKey, units: 4 }, { key: sttKey, units: 4 }] });
  const loaded = await loadSnapshotFromFile(CONFIG);
  snapshot = { ...loaded, providers: new Map([['smallest', { name: 'smallest', upstream: sim.url }]]) };
  aliceToken = await mint('alice', ['voice']);
  malloryToken = await mint('mallory', []);
});
afterAll(async () => {
  await sim.close();
});

const modes = ['inproc', 'grpc'] as const;
for (const mode of modes) {
  describe(`edge → simulator with the real decision (${mode})`, () => {
    let edge: EdgeHandle;
    let extproc: ExtprocServer | undefined;
    let client: ReturnType<typeof createGrpcAuthorizer> | undefined;
    const rec = recordingObserver();

    beforeAll(async () => {
      const source = new StaticSnapshotSource(snapshot);
      const inproc = createAuthorizer(source);
      if (mode === 'grpc') {
        extproc = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: inproc, source, logger: pino({ level: 'silent' }) });
        client = createGrpcAuthorizer(`127.0.0.1:${extproc.port}`, { timeoutMs: 2000 });
      }
      edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client ?? inproc, observe: rec.observe });
    });
    afterAll(async () => {
      await edge.close();
      client?.close();
      await extproc?.close(0);
    });

    it('returns a valid WAV for TTS sync and never leaks the provider key', async () => {
      const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'Hello from the embedded edge.', voice_id: 'magnus', output_format: 'wav', sample_rate: 16000, request_id: 'r-1' }),
      });
      const body = Buffer.from(await r.body.arrayBuffer());
      expect(r.statusCode).toBe(200);
      expect(body.subarray(0, 4).toString()).toBe('RIFF');
      expect(r.headers['x-external-request-id']).toBe('r-1');
      expect(JSON.stringify(r.headers)).not.toContain(ttsKey);
      expect(body.includes(Buffer.from(ttsKey))).toBe(false);
      const seen = sim.requests().at(-1)!;
      expect(JSON.stringify(seen)).not.toContain(aliceToken);
    });

    it('streams SSE events and relays a WebSocket synthesis', async () => {
      const r = await request(`${edge.url}/smallest/waves/v1/tts/live`, {
        method: 'POST',
        headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'Streaming through the gateway.', voice_id: 'magnus', model: 'lightning_v3.1' }),
      });
      expect(r.statusCode).toBe(200);
      expect(r.headers['content-type']).toContain('text/event-stream');
      const text = await r.body.text();
      expect(text).toContain('"done":true');

      const ws = new WebSocket(`${edge.url.replace('http:', 'ws:')}/smallest/waves/v1/tts/live?token=${aliceToken}`);
      const statuses: string[] = [];
      await new Promise<void>((resolve, reject) => {
        ws.on('open', () => ws.send(JSON.stringify({ text: 'Hi there.', voice_id: 'magnus', complete_backoff_ms: 0 })));
        ws.on('message', (d, isBinary) => {
          expect(isBinary).toBe(false);
          const m = JSON.parse(d.toString()) as { status: string };
          statuses.push(m.status);
          if (m.status === 'complete' || m.status === 'error') resolve();
        });
        ws.on('error', reject);
      });
      ws.close();
      expect(statuses).toContain('chunk');
      expect(statuses.at(-1)).toBe('complete');
    });

    it('denies a caller without entitlement before the simulator sees anything', async () => {
      const before = sim.requests().length;
      const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${malloryToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'no', voice_id: 'magnus' }),
      });
      expect(r.statusCode).toBe(403);
      expect(r.headers['content-type']).toBe('application/json');
      expect(((await r.body.json()) as { error: { code: string } }).error.code).toBeTruthy();
      const none = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, { method: 'POST', body: '{}' });
      expect(none.statusCode).toBe(401);
      await none.body.dump();
      expect(sim.requests().length).toBe(before);
    });
  });
}
