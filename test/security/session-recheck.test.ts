/**
 * Issue 10, point 7: open sessions are re-checked. Through the real edge and decision, with the
 * simulator as the provider behind a relay that numbers every frame it receives, and the config
 * reloaded from a file as SIGHUP reloads it (reloadInto):
 * - bob's STT socket is closed with 1008 within a second of a reload that takes pulse away from
 *   him, and no frame he sends after the reload reaches the provider; alice, still entitled, keeps
 *   streaming on hers;
 * - a TTS session whose entitlement is removed gets the provider-shaped error frame, then 1008;
 * - a session past --max-session is closed while it streams;
 * - a token that expires mid-session ends it (at exp plus the issuer's skew plus the grace);
 * - a session admitted only through a control-plane team membership ends when the store removes it.
 * Spans record why (`error`) and bill what was served.
 */
import http from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { loadSnapshotFromFile } from '../../extproc/adapters/files/config-file.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { reloadInto } from '../../extproc/main/reload.ts';
import { parseOptions } from '../../extproc/main/parse.ts';
import { EDGE_OPTIONS } from '../../extproc/main/options.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { EXAMPLE_CONFIG, EXAMPLES_DIR, providerKeys } from '../e2e/stack.ts';
import { closed, opened, until } from '../edge/helpers.ts';

const STT_PATH = '/smallest/waves/v1/pulse/get_text?language=en&sample_rate=16000';
const TTS_PATH = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';
const quiet = pino({ level: 'silent' });
/** bob's entitlement to pulse (account smallest-stt), and team voice's to the TTS account. */
const REVOKE_BOB = /(name: smallest-stt\n[\s\S]*?collaborators: )\{ users: \[bob\], teams: \[voice\] \}/;
const REVOKE_VOICE_TTS = /(name: smallest-tts\n[\s\S]*?collaborators: )\{ teams: \[voice, studio\] \}/;

/** One frame as the provider side of the relay received it. */
interface Received {
  readonly conn: number;
  /** The sequence number the test client wrote into the frame's first 4 bytes (binary frames). */
  readonly seq: number;
  readonly text?: string;
}

/**
 * A WebSocket relay in front of the simulator that records every client frame the edge delivers.
 * The simulator keeps no record of STT frames, and "nothing more reached the provider" is the claim.
 */
interface Relay {
  readonly url: string;
  readonly received: Received[];
  /** Connections opened so far; the next one gets this number. */
  readonly opened: number;
  close(): Promise<void>;
}

async function startRelay(target: string): Promise<Relay> {
  const received: Received[] = [];
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  let next = 0;
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    const conn = next++;
    // `relay_delay_ms` in the query holds the provider's handshake back (Pulse ignores unknown parameters).
    const delay = Number(new URL(req.url ?? '/', 'http://relay').searchParams.get('relay_delay_ms') ?? '0');
    setTimeout(() => connect(req, socket, head, conn), delay);
  });
  function connect(req: http.IncomingMessage, socket: import('node:stream').Duplex, head: Buffer, conn: number): void {
    const up = new WebSocket(`${target.replace(/^http/, 'ws')}${req.url}`, { headers: { authorization: req.headers.authorization ?? '' }, perMessageDeflate: false });
    up.on('error', () => socket.destroy());
    up.on('unexpected-response', () => socket.destroy());
    up.once('open', () =>
      wss.handleUpgrade(req, socket, head, (client) => {
        client.on('message', (data, isBinary) => {
          const buf = data as Buffer;
          received.push(isBinary ? { conn, seq: buf.readUInt32BE(0) } : { conn, seq: -1, text: buf.toString() });
          if (up.readyState === WebSocket.OPEN) up.send(buf, { binary: isBinary });
        });
        up.on('message', (data, isBinary) => client.readyState === WebSocket.OPEN && client.send(data as Buffer, { binary: isBinary }));
        client.on('close', (code) => up.readyState === WebSocket.OPEN && up.close(code === 1005 ? 1000 : code));
        up.on('close', (code) => client.readyState === WebSocket.OPEN && client.close(code === 1005 ? 1000 : code));
        client.on('error', () => {});
      }),
    );
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    get opened() {
      return next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** 100 ms of 16 kHz linear16 silence, its first 4 bytes the frame's sequence number. */
function audioFrame(seq: number): Buffer {
  const b = Buffer.alloc(3200);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** An STT client sending numbered audio frames every 20 ms until its socket is no longer open. */
class Streamer {
  seq = 0;
  readonly ws: WebSocket;
  readonly closedWith: Promise<{ code: number; reason: string }>;
  closedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  constructor(url: string, token: string) {
    this.ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    this.ws.on('error', () => {});
    this.closedWith = closed(this.ws).then((c) => ((this.closedAt = Date.now()), c));
  }
  async start(): Promise<this> {
    await opened(this.ws);
    this.#timer = setInterval(() => this.send(), 20);
    return this;
  }
  send(): number {
    if (this.ws.readyState !== WebSocket.OPEN) return -1;
    const seq = this.seq++;
    this.ws.send(audioFrame(seq));
    return seq;
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

let sim: SimulatorHandle;
let relay: Relay;
let dir: string;
let baseText: string;

beforeAll(async () => {
  const keys = providerKeys(await loadSnapshotFromFile(EXAMPLE_CONFIG));
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 8 }, { key: keys.stt, units: 8 }] });
  relay = await startRelay(sim.url);
  dir = await mkdtemp(join(tmpdir(), 'vg-recheck-'));
  const example = await readFile(EXAMPLE_CONFIG, 'utf8');
  // The temporary config names the example's secrets by absolute path and the relay as upstream.
  baseText = example.replaceAll('file:dev/', `file:${EXAMPLES_DIR}dev/`).replace(/upstream: http:\/\/127\.0\.0\.1:7070/, `upstream: ${relay.url}`);
  expect(baseText).toContain(`upstream: ${relay.url}`);
  expect(baseText).toMatch(REVOKE_BOB);
  expect(baseText).toMatch(REVOKE_VOICE_TTS);
});

afterAll(async () => {
  await relay?.close();
  await sim?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Rig {
  readonly edge: EdgeHandle;
  readonly source: StaticSnapshotSource;
  readonly configPath: string;
  readonly spans: UsageSpan[];
  readonly wsBase: string;
  token(user: string, teams?: string[], ttlSeconds?: number): Promise<string>;
  /** Rewrites the config file with `edit` applied and reloads it the way SIGHUP does. */
  reload(edit: (text: string) => string): Promise<void>;
  spanOf(predicate: (s: UsageSpan) => boolean): Promise<UsageSpan>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.edge.close();
});

let rigCount = 0;
async function startRig(opts: { maxSessionMs?: number; sessionTokenGraceMs?: number; edit?: (text: string) => string } = {}): Promise<Rig> {
  const configPath = join(dir, `voicegate-${rigCount++}.yaml`);
  await writeFile(configPath, (opts.edit ?? ((t) => t))(baseText));
  const source = new StaticSnapshotSource(await loadSnapshotFromFile(configPath));
  const spans: UsageSpan[] = [];
  const sink: SpanSink = { publish: (s) => void spans.push(s), flush: async () => {}, close: async () => {} };
  const edge = await startEdge({
    host: '127.0.0.1',
    port: 0,
    source,
    authorizer: createAuthorizer(source),
    observe: createUsageObserverFactory({ sink }),
    ...(opts.maxSessionMs !== undefined ? { maxSessionMs: opts.maxSessionMs } : {}),
    ...(opts.sessionTokenGraceMs !== undefined ? { sessionTokenGraceMs: opts.sessionTokenGraceMs } : {}),
  });
  const rig: Rig = {
    edge,
    source,
    configPath,
    spans,
    wsBase: edge.url.replace(/^http/, 'ws'),
    token: async (user, teams = [], ttlSeconds) => signDevToken(source.current()!, { user, teams, ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) }),
    async reload(edit) {
      const before = source.current()!.version;
      await writeFile(configPath, edit(await readFile(configPath, 'utf8')));
      expect(await reloadInto(source, configPath, quiet)).toBe(true);
      expect(source.current()!.version).toBeGreaterThan(before);
    },
    async spanOf(predicate) {
      await until(() => spans.some(predicate), 5000, 'span');
      return spans.find(predicate)!;
    },
  };
  rigs.push(rig);
  return rig;
}

describe('sessions are re-checked on every snapshot swap', () => {
  it('a reload that removes bob ends his STT socket with 1008 within 1 s; nothing he sends after it reaches the provider; alice streams on', async () => {
    const rig = await startRig();
    const firstConn = relay.opened;
    const bob = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('bob')).start();
    await until(() => relay.received.some((r) => r.conn === firstConn), 5000, "bob's first frame upstream");
    const alice = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('alice', ['voice'])).start();
    const aliceConn = firstConn + 1;
    await until(() => relay.received.filter((r) => r.conn === aliceConn).length >= 5, 5000, "alice's frames upstream");
    await until(() => relay.received.filter((r) => r.conn === firstConn).length >= 10, 5000, "bob's frames upstream");

    const reloadedAt = Date.now();
    await rig.reload((t) => t.replace(REVOKE_BOB, '$1{ teams: [voice] }'));
    // Frames bob sends now are on the wire before his client has read the close: the edge must drop them.
    const afterReload = [bob.send(), bob.send(), bob.send()];
    expect(afterReload.every((s) => s >= 0)).toBe(true);

    const { code, reason } = await bob.closedWith;
    bob.stop();
    expect(code).toBe(1008);
    expect(reason).toBe('entitlement revoked');
    expect(bob.closedAt - reloadedAt).toBeLessThan(1000);

    // Alice's session is untouched: it stays open and her frames keep reaching the provider.
    const aliceBefore = relay.received.filter((r) => r.conn === aliceConn).length;
    await new Promise((r) => setTimeout(r, 500));
    expect(alice.ws.readyState).toBe(WebSocket.OPEN);
    expect(relay.received.filter((r) => r.conn === aliceConn).length).toBeGreaterThan(aliceBefore + 5);

    const bobSeqs = relay.received.filter((r) => r.conn === firstConn).map((r) => r.seq);
    expect(bobSeqs.length).toBeGreaterThan(0);
    expect(Math.max(...bobSeqs)).toBeLessThan(afterReload[0]!);

    const span = await rig.spanOf((s) => s.user === 'bob');
    expect(span).toMatchObject({ status: 101, closeCode: 1008, error: 'entitlement_revoked', model: 'pulse', account: 'smallest-stt' });
    // What was served is billed: every frame the provider received, at 32,000 bytes per second.
    expect(span.audioSeconds).toBeCloseTo((bobSeqs.length * 3200) / 32000, 1);
    expect(Number(span.costUsd)).toBeGreaterThan(0);

    alice.stop();
    alice.ws.close(1000);
    await alice.closedWith;
    const aliceSpan = await rig.spanOf((s) => s.user === 'alice');
    expect(aliceSpan.error).toBe('');
  });

  it('a TTS session whose entitlement is removed gets the provider-shaped error frame, then 1008', async () => {
    const rig = await startRig();
    const ws = new WebSocket(`${rig.wsBase}${TTS_PATH}`, { headers: { authorization: `Bearer ${await rig.token('alice', ['voice'])}` } });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    const end = closed(ws);
    await opened(ws);
    ws.send(JSON.stringify({ text: 'Hello before the reload.', voice_id: 'magnus', flush: true }));
    await until(() => messages.some((m) => (JSON.parse(m) as { status?: string }).status === 'chunk'), 5000, 'first audio');
    const framesBefore = sim.frames().length;
    await rig.reload((t) => t.replace(REVOKE_VOICE_TTS, '$1{ users: [carol] }'));
    ws.send(JSON.stringify({ text: 'After the reload: never synthesised.', voice_id: 'magnus' }));

    const { code, reason } = await end;
    expect(code).toBe(1008);
    expect(reason).toBe('entitlement revoked');
    // The error frame is the last thing the client receives (audio of the first synthesis may precede it).
    const frames = messages.map((m) => JSON.parse(m) as Record<string, unknown>);
    const error = frames.at(-1)!;
    expect(error).toEqual({ status: 'error', message: expect.stringContaining('alice'), error: error['message'] });
    expect(frames.filter((f) => f['status'] === 'error')).toHaveLength(1);
    expect(sim.frames().slice(framesBefore).filter((f) => f.text.includes('After the reload'))).toEqual([]);

    const span = await rig.spanOf((s) => s.path === TTS_PATH);
    expect(span).toMatchObject({ closeCode: 1008, error: 'entitlement_revoked', characters: 'Hello before the reload.'.length });
    expect(Number(span.costUsd)).toBeGreaterThan(0);
  });

  it('a reload while a session is still handshaking is applied to it as soon as it opens', async () => {
    const rig = await startRig();
    const before = relay.opened;
    const bob = new Streamer(`${rig.wsBase}${STT_PATH}&relay_delay_ms=400`, await rig.token('bob'));
    // Decided (allowed) at once; the provider's handshake is held back while the reload happens.
    await until(() => relay.opened > before, 2000, 'upgrade under way');
    expect(bob.ws.readyState).toBe(WebSocket.CONNECTING);
    await rig.reload((t) => t.replace(REVOKE_BOB, '$1{ teams: [voice] }'));
    const { code, reason } = await bob.closedWith;
    expect({ code, reason }).toEqual({ code: 1008, reason: 'entitlement revoked' });
    expect(await rig.spanOf((s) => s.user === 'bob')).toMatchObject({ status: 101, closeCode: 1008, error: 'entitlement_revoked' });
  });

  it("a JWT session admitted through a control-plane team ends when the store removes the member; a token's own team keeps its session", async () => {
    const rig = await startRig();
    // The control plane's team memberships, as compile-data-plane.ts puts them in the snapshot.
    const withMembers = (members: Array<[string, string[]]>) => {
      const current = rig.source.current()!;
      expect(rig.source.swap({ ...current, version: current.version + 1, teamMembers: new Map(members) })).toBe(true);
    };
    withMembers([['carol', ['voice']], ['alice', ['voice']]]);
    // carol's token claims no team: only the store's membership of voice lets her use pulse.
    const carol = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('carol')).start();
    const alice = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('alice', ['voice'])).start();
    await until(() => carol.seq > 5 && alice.seq > 5, 5000, 'both streaming');
    withMembers([]);

    expect(await carol.closedWith).toEqual({ code: 1008, reason: 'entitlement revoked' });
    carol.stop();
    expect(await rig.spanOf((s) => s.user === 'carol')).toMatchObject({ status: 101, closeCode: 1008, error: 'entitlement_revoked', model: 'pulse' });
    // alice's own claim still names voice: leaving the store's team leaves her session open.
    await new Promise((r) => setTimeout(r, 300));
    expect(alice.ws.readyState).toBe(WebSocket.OPEN);
    alice.stop();
    alice.ws.close(1000);
    await alice.closedWith;
    expect((await rig.spanOf((s) => s.user === 'alice')).error).toBe('');
  });

  it('a session that moved to another account ends; an unrelated reload leaves sessions alone', async () => {
    const rig = await startRig();
    const alice = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('alice', ['voice'])).start();
    // A reload that changes nothing alice depends on (a price) keeps her session.
    await rig.reload((t) => t.replace('per_minute_streaming: "0.006"', 'per_minute_streaming: "0.007"'));
    await new Promise((r) => setTimeout(r, 200));
    expect(alice.ws.readyState).toBe(WebSocket.OPEN);
    // pulse now served by smallest-tts, whose collaborators include team voice: still 1008.
    await rig.reload((t) => t.replace(/(name: pulse\n\s+provider: smallest\n\s+type: stt\n\s+account: )smallest-stt/, '$1smallest-tts'));
    expect(await alice.closedWith).toEqual({ code: 1008, reason: 'model moved to another account' });
    alice.stop();
    expect(await rig.spanOf((s) => s.user === 'alice')).toMatchObject({ error: 'account_changed' });
  });
});

describe('sessions are bounded in time', () => {
  it('--max-session closes a session that keeps streaming', async () => {
    const rig = await startRig({ maxSessionMs: 1500 });
    const alice = await new Streamer(`${rig.wsBase}${STT_PATH}`, await rig.token('alice', ['voice'])).start();
    const openedAt = Date.now();
    const { code, reason } = await alice.closedWith;
    alice.stop();
    expect({ code, reason }).toEqual({ code: 1008, reason: 'maximum session duration reached' });
    // Activity every 20 ms reset the idle bound throughout; only the lifetime ended it.
    expect(alice.closedAt - openedAt).toBeGreaterThanOrEqual(1400);
    expect(alice.closedAt - openedAt).toBeLessThan(2500);
    expect(alice.seq).toBeGreaterThan(50);
    const span = await rig.spanOf((s) => s.user === 'alice');
    expect(span).toMatchObject({ closeCode: 1008, error: 'max_session_duration' });
    expect(span.audioSeconds).toBeGreaterThan(0);
  });

  it('a token that expires mid-session ends it at exp (+ skew + grace), on TTS with the error frame', async () => {
    // No clock skew, so the session's end is exp + the 300 ms grace.
    const rig = await startRig({ sessionTokenGraceMs: 300, edit: (t) => t.replace('clock_skew_seconds: 30', 'clock_skew_seconds: 0') });
    const token = await rig.token('alice', ['voice'], 2);
    const exp = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp * 1000;
    const stt = await new Streamer(`${rig.wsBase}${STT_PATH}`, token).start();
    const tts = new WebSocket(`${rig.wsBase}${TTS_PATH}`, { headers: { authorization: `Bearer ${token}` } });
    const ttsMessages: string[] = [];
    tts.on('message', (d) => ttsMessages.push(d.toString()));
    const ttsEnd = closed(tts).then((c) => ({ ...c, at: Date.now() }));
    await opened(tts);
    // Keep the TTS session busy too: a synthesis every 200 ms.
    const busy = setInterval(() => tts.readyState === WebSocket.OPEN && tts.send(JSON.stringify({ text: 'tick', voice_id: 'magnus' })), 200);

    const sttEnd = await stt.closedWith;
    stt.stop();
    const ttsClosed = await ttsEnd;
    clearInterval(busy);
    expect(sttEnd).toEqual({ code: 1008, reason: 'token expired' });
    expect(stt.closedAt).toBeGreaterThanOrEqual(exp + 300);
    expect(stt.closedAt).toBeLessThan(exp + 300 + 1000);
    expect({ code: ttsClosed.code, reason: ttsClosed.reason }).toEqual({ code: 1008, reason: 'token expired' });
    expect(ttsClosed.at).toBeGreaterThanOrEqual(exp + 300);
    const last = JSON.parse(ttsMessages.at(-1)!) as Record<string, unknown>;
    expect(last).toMatchObject({ status: 'error', message: expect.stringContaining('expired') });
    expect(last['error']).toBe(last['message']);
    await until(() => rig.spans.filter((s) => s.error === 'token_expired').length === 2, 5000, 'both spans');
  });
});

describe('--max-session and --session-token-grace', () => {
  const parse = (args: string[]) => parseOptions(EDGE_OPTIONS, ['--config', 'c.yaml', ...args], {});
  it('default to 1 h and 0; take durations; refuse a zero lifetime', () => {
    expect(parse([])).toMatchObject({ ok: true, value: { maxSession: 3_600_000, sessionTokenGrace: 0 } });
    expect(parse(['--max-session', '30m', '--session-token-grace', '5s'])).toMatchObject({ ok: true, value: { maxSession: 1_800_000, sessionTokenGrace: 5000 } });
    expect(parse(['--max-session', '2h'])).toMatchObject({ ok: true, value: { maxSession: 7_200_000 } });
    expect(parse(['--max-session', '0']).ok).toBe(false);
    expect(parse(['--max-session', '1d']).ok).toBe(false);
  });
});
