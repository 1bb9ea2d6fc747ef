/**
 * Issue 10, mid-session enforcement of SSE streams and configured maximum durations. Through the
 * real edge and decision, with the simulator (paced at real time, so a long text streams for many
 * seconds) behind an HTTP relay that sees when the edge stops reading it, and the config reloaded
 * from a file as SIGHUP does:
 * - an SSE stream whose caller loses the entitlement ends within a second of the reload, with the
 *   gateway's `event: error` as its last event; the edge aborts its upstream request at once;
 * - `models[].max_session_seconds` ends an SSE stream and an STT WebSocket that keep streaming;
 * - spans say `endedBy: policy` (and `upstream` / `client` for ends that were not the gateway's).
 */
import http from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { loadSnapshotFromFile } from '../../extproc/adapters/files/config-file.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { reloadInto } from '../../extproc/main/reload.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { EXAMPLE_CONFIG, EXAMPLES_DIR, providerKeys } from '../e2e/stack.ts';
import { closed, opened, until } from '../edge/helpers.ts';

const SSE_PATH = '/smallest/waves/v1/lightning-v3.1/stream';
const STT_PATH = '/smallest/waves/v1/pulse/get_text?language=en&sample_rate=16000';
const quiet = pino({ level: 'silent' });
const REVOKE_VOICE_TTS = /(name: smallest-tts\n[\s\S]*?collaborators: )\{ teams: \[voice, studio\] \}/;
/** About 25 s of speech: at real-time pacing the provider would stream it for ~25 s. */
const LONG_TEXT = 'This sentence is long enough to keep a paced stream busy. '.repeat(8);

/** What the relay saw of one request the edge sent it. */
interface Leg {
  readonly path: string;
  /** Bytes of the provider's response relayed to the edge. */
  bytes: number;
  /** When the edge closed its request before the response was complete. */
  abortedAt?: number;
  completed: boolean;
}

/** An HTTP relay in front of the simulator that records when the edge stops reading. */
async function startRelay(target: string): Promise<{ url: string; legs: Leg[]; close(): Promise<void> }> {
  const legs: Leg[] = [];
  const server = http.createServer((req, res) => {
    const leg: Leg = { path: req.url ?? '', bytes: 0, completed: false };
    legs.push(leg);
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.on('data', (c: Buffer) => (leg.bytes += c.length));
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('finish', () => (leg.completed = true));
    res.on('close', () => {
      if (!res.writableFinished) {
        leg.abortedAt = Date.now();
        up.destroy();
      }
    });
    req.pipe(up);
  });
  // WebSocket upgrades are tunnelled to the simulator byte for byte.
  server.on('upgrade', (req, socket, head) => {
    const up = net.connect(Number(new URL(target).port), '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    legs,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Reads an SSE response to its end; the events as they arrived, and when the body ended. */
async function readSse(res: Response): Promise<{ events: string[]; endedAt: number; cut: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let cut = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    cut = true;
  }
  return { events: text.split('\n\n').filter((e) => e !== ''), endedAt: Date.now(), cut };
}

let sim: SimulatorHandle;
let relay: Awaited<ReturnType<typeof startRelay>>;
let dir: string;
let baseText: string;

beforeAll(async () => {
  const keys = providerKeys(await loadSnapshotFromFile(EXAMPLE_CONFIG));
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'realistic', speedFactor: 1, firstAudioMs: 50, accounts: [{ key: keys.tts, units: 8 }, { key: keys.stt, units: 8 }] });
  relay = await startRelay(sim.url);
  dir = await mkdtemp(join(tmpdir(), 'vg-sse-recheck-'));
  const example = await readFile(EXAMPLE_CONFIG, 'utf8');
  baseText = example.replaceAll('file:dev/', `file:${EXAMPLES_DIR}dev/`).replace(/upstream: http:\/\/127\.0\.0\.1:7070/, `upstream: ${relay.url}`);
  expect(baseText).toContain(`upstream: ${relay.url}`);
  expect(baseText).toMatch(REVOKE_VOICE_TTS);
});

afterAll(async () => {
  await relay?.close();
  await sim?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const edges: EdgeHandle[] = [];
afterEach(async () => {
  for (const e of edges.splice(0)) await e.close();
});

let count = 0;
async function startRig(edit: (t: string) => string = (t) => t) {
  const configPath = join(dir, `voicegate-${count++}.yaml`);
  await writeFile(configPath, edit(baseText));
  const source = new StaticSnapshotSource(await loadSnapshotFromFile(configPath));
  const spans: UsageSpan[] = [];
  const sink: SpanSink = { publish: (s) => void spans.push(s), flush: async () => {}, close: async () => {} };
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), observe: createUsageObserverFactory({ sink }) });
  edges.push(edge);
  return {
    edge,
    spans,
    token: (user: string, teams: string[] = []) => signDevToken(source.current()!, { user, teams }),
    sse: async (token: string, text = LONG_TEXT) =>
      fetch(`${edge.url}${SSE_PATH}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text, voice_id: 'magnus' }),
      }),
    async reload(change: (t: string) => string) {
      await writeFile(configPath, change(await readFile(configPath, 'utf8')));
      expect(await reloadInto(source, configPath, quiet)).toBe(true);
    },
    async spanOf(predicate: (s: UsageSpan) => boolean): Promise<UsageSpan> {
      await until(() => spans.some(predicate), 5000, 'span');
      return spans.find(predicate)!;
    },
  };
}

/** The relay's leg for the latest request whose (upstream) path ends with `suffix`. */
const lastLeg = (suffix: string) => [...relay.legs].reverse().find((l) => l.path.endsWith(suffix))!;
/** SSE_PATH as the provider receives it (the edge strips the `/smallest` prefix). */
const UPSTREAM_SSE = '/lightning-v3.1/stream';

describe('SSE streams are re-checked on every snapshot swap', () => {
  it('a reload that removes the entitlement ends the stream within 1 s with the error event; the upstream request is aborted', async () => {
    const rig = await startRig();
    const res = await rig.sse(await rig.token('alice', ['voice']));
    expect(res.status).toBe(200);
    const reading = readSse(res);
    const leg = await (async () => {
      await until(() => relay.legs.some((l) => l.path.endsWith(UPSTREAM_SSE) && l.bytes > 4096), 5000, 'audio flowing');
      return lastLeg(UPSTREAM_SSE);
    })();

    const reloadedAt = Date.now();
    await rig.reload((t) => t.replace(REVOKE_VOICE_TTS, '$1{ users: [carol] }'));
    const { events, endedAt, cut } = await reading;

    expect(endedAt - reloadedAt).toBeLessThan(1000);
    // The edge stopped reading the provider: its request was closed long before the audio ran out.
    await until(() => leg.abortedAt !== undefined, 1000, 'upstream request aborted');
    expect(leg.abortedAt! - reloadedAt).toBeLessThan(1000);
    expect(leg.completed).toBe(false);
    const bytesAtAbort = leg.bytes;
    await new Promise((r) => setTimeout(r, 300));
    expect(leg.bytes).toBe(bytesAtAbort);

    // The simulator writes whole events per chunk, so the edge ends at a boundary with its own last event.
    expect(cut).toBe(false);
    expect(events.length).toBeGreaterThan(2);
    expect(events.slice(0, -1).every((e) => e.startsWith('event: audio\n'))).toBe(true);
    const last = events.at(-1)!;
    expect(last.split('\n')[0]).toBe('event: error');
    const data = JSON.parse(last.split('\n')[1]!.replace(/^data: /, '')) as Record<string, unknown>;
    expect(data).toEqual({ status: 'error', done: true, message: expect.stringContaining('alice'), error: data['message'] });
    expect(events.some((e) => e.includes('"status":"200"'))).toBe(false);

    const span = await rig.spanOf((s) => s.user === 'alice');
    expect(span).toMatchObject({ status: 200, routeKind: 'sse', error: 'entitlement_revoked', endedBy: 'policy' });
    // What was relayed is billed (the characters of the request), as for a cut WebSocket.
    expect(Number(span.costUsd)).toBeGreaterThan(0);
  });

  it('a stream nothing ends early completes as before: span endedBy upstream; a client that leaves: endedBy client', async () => {
    const rig = await startRig();
    const token = await rig.token('alice', ['voice']);
    const done = await readSse(await rig.sse(token, 'Short.'));
    expect(done.cut).toBe(false);
    expect(done.events.at(-1)).toBe('data: {"status":"200","done":true}');
    expect(await rig.spanOf((s) => s.requestId !== '' && s.error === '')).toMatchObject({ endedBy: 'upstream', routeKind: 'sse' });

    const controller = new AbortController();
    const res = await fetch(`${rig.edge.url}${SSE_PATH}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: LONG_TEXT, voice_id: 'magnus' }),
      signal: controller.signal,
    });
    await res.body!.getReader().read();
    controller.abort();
    expect(await rig.spanOf((s) => s.error === 'client_aborted')).toMatchObject({ endedBy: 'client' });
  });
});

describe('models[].max_session_seconds', () => {
  const oneSecond = (t: string) =>
    t
      .replace('aliases: [lightning_v3.1]\n', 'aliases: [lightning_v3.1]\n    max_session_seconds: 1\n')
      .replace(/(name: pulse\n\s+provider: smallest\n\s+type: stt\n\s+account: smallest-stt\n)/, '$1    max_session_seconds: 1\n');

  it('ends an SSE stream at the model bound, with the error event naming it', async () => {
    const rig = await startRig(oneSecond);
    const started = Date.now();
    const { events, endedAt, cut } = await readSse(await rig.sse(await rig.token('alice', ['voice'])));
    expect(cut).toBe(false);
    expect(endedAt - started).toBeGreaterThanOrEqual(950);
    expect(endedAt - started).toBeLessThan(2500);
    const data = JSON.parse(events.at(-1)!.split('\n')[1]!.replace(/^data: /, '')) as { message: string };
    expect(data.message).toContain('model "lightning-v3.1"');
    expect(await rig.spanOf((s) => s.routeKind === 'sse')).toMatchObject({ error: 'max_session_duration', endedBy: 'policy' });
  });

  it('closes an STT WebSocket at the model bound with 1008, however active', async () => {
    const rig = await startRig(oneSecond);
    const ws = new WebSocket(`${rig.edge.url.replace(/^http/, 'ws')}${STT_PATH}`, { headers: { authorization: `Bearer ${await rig.token('bob')}` } });
    ws.on('error', () => {});
    const end = closed(ws);
    await opened(ws);
    const openedAt = Date.now();
    const timer = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send(Buffer.alloc(3200)), 20);
    const { code, reason } = await end;
    clearInterval(timer);
    expect({ code, reason }).toEqual({ code: 1008, reason: 'maximum session duration reached' });
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(900);
    expect(Date.now() - openedAt).toBeLessThan(2500);
    expect(await rig.spanOf((s) => s.user === 'bob')).toMatchObject({ closeCode: 1008, error: 'max_session_duration', endedBy: 'policy' });
  });
});
