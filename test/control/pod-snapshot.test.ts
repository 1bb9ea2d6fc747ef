/**
 * Issue 11 point 7, the pod side: `voicegate edge` (in process, through main()) fed by the control
 * plane's snapshot from NATS KV on the machine's real server (a bucket of its own per run), from
 * the object store when the KV value only points there, from the control plane's HTTP endpoint
 * while NATS is unreachable, and from its encrypted disk copy after a restart with neither. The
 * publisher is a few lines of this test, writing the layout the real one writes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type KV, type NatsConnection, type ObjectStore } from 'nats';
import { pino } from 'pino';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payloadSha256 } from '../../extproc/core/control/compile-data-plane.ts';
import { snapshotTokenBinding, type DataPlaneSnapshot } from '../../extproc/core/control/data-plane.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { loadLocalConfigFile } from '../../extproc/adapters/files/local-config.ts';
import { controlSnapshotComponent, type SnapshotEvent } from '../../extproc/main/components/control-snapshot.ts';
import { main } from '../../extproc/main/main.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { devTokens, exampleSnapshot, type Tokens } from '../e2e/stack.ts';
import { freePort, writePodConfig } from './pod-fixtures.ts';

const NATS = 'nats://127.0.0.1:4222';
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const TTS_KEY = `sk_tts_${randomBytes(12).toString('hex')}`;
const QUIET = { ...process.env, LOG_LEVEL: 'silent', NATS_URL: '', VOICEGATE_SNAPSHOT_KEY: '' };

let dir: string;
let config: string;
let keyFile: string;
let tokenFile: string;
let keys: Keyring;
let sim: SimulatorHandle;
let tokens: Tokens;
let nc: NatsConnection;
let bucket: string;
let kv: KV;
let os: ObjectStore;
const podToken = randomBytes(16).toString('hex');
const running: { stop(): Promise<number> }[] = [];

/** A payload: account `smallest-tts` with TTS_KEY sealed for `revision`, lightning-v3.1 on it. */
function payload(revision: number, subjects: string[]): DataPlaneSnapshot {
  const s = keys.seal(TTS_KEY, snapshotTokenBinding('smallest-tts', revision));
  return {
    format: 1,
    revision,
    published_at: new Date().toISOString(),
    accounts: [
      {
        name: 'smallest-tts',
        provider: 'smallest',
        base_url: null,
        concurrency_units: 4,
        ws_per_unit: 5,
        token: { algorithm: s.algorithm, kek_id: s.kekId, wrapped_key: Buffer.from(s.wrappedKey).toString('base64'), ciphertext: Buffer.from(s.ciphertext).toString('base64') },
      },
    ],
    collaborators: subjects.map((subject) => ({ account: 'smallest-tts', subject, role: 'user' as const })),
    models: [{ account: 'smallest-tts', model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price: { per_1k_chars: '0.0195' } }],
    team_members: [],
    service_keys: [],
  };
}

/** The tiny publisher: the KV value inline, or a pointer to the object store. */
async function publish(p: DataPlaneSnapshot, via: 'kv' | 'object' = 'kv'): Promise<void> {
  const text = JSON.stringify(p);
  const sha256 = payloadSha256(text);
  if (via === 'kv') {
    await kv.put('snapshot', JSON.stringify({ revision: p.revision, sha256, payload: text }));
    return;
  }
  const name = `snapshot-${p.revision}`;
  await os.putBlob({ name }, new TextEncoder().encode(text));
  await kv.put('snapshot', JSON.stringify({ revision: p.revision, sha256, object: name }));
}

/** `voicegate edge` in process with the control-plane flags; resolves once /healthz answers. */
async function edge(flags: string[]): Promise<{ url: string; stop(): Promise<number>; stderr(): string }> {
  const port = await freePort();
  const ac = new AbortController();
  let stderr = '';
  const args = ['edge', '--config', config, '--host', '127.0.0.1', '--port', String(port), '--http-port', '0', '--limits', 'pod', '--spool-dir', join(dir, `spool-${port}`), '--snapshot-key-file', keyFile, '--snapshot-poll', '200', ...flags];
  const code = main(args, ac.signal, { env: QUIET, stdout: () => {}, stderr: (s) => (stderr += s) });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    const exited = await Promise.race([code.then((c) => c), new Promise((r) => setTimeout(() => r(undefined), 25))]);
    if (exited !== undefined || i > 400) throw new Error(`edge never answered (exit ${String(exited)}): ${stderr}`);
  }
  const handle = { url, stop: () => (ac.abort(), code), stderr: () => stderr };
  running.push(handle);
  return handle;
}

async function tts(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}${TTS}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Hello from the control plane.', voice_id: 'magnus', output_format: 'wav', sample_rate: 16000 }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** Polls `probe` until it returns `want` (propagation is asynchronous; no time is asserted). */
async function until<T>(probe: () => Promise<T>, want: T, what: string, deadlineMs = 15_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  let last: T | undefined;
  while (Date.now() < end) {
    last = await probe();
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: still ${String(last)}, wanted ${String(want)}`);
}

const readyz = (url: string) => fetch(`${url}/readyz`).then((r) => r.status);

/** The control plane's HTTP fallback as the test needs it: records each request's If-None-Match. */
function controlPlane(current: () => DataPlaneSnapshot | undefined): Promise<{ url: string; seen: { auth: string | undefined; ifNoneMatch: string | undefined; status: number }[]; close(): Promise<void> }> {
  const seen: { auth: string | undefined; ifNoneMatch: string | undefined; status: number }[] = [];
  const server: Server = createHttpServer((req: IncomingMessage, res) => {
    const p = current();
    const record = (status: number) => seen.push({ auth: req.headers.authorization, ifNoneMatch: req.headers['if-none-match'], status });
    if (req.url !== '/admin/v1/snapshot' || req.headers.authorization !== `Bearer ${podToken}`) return record(401), res.writeHead(401).end();
    if (!p) return record(503), res.writeHead(503).end();
    if (req.headers['if-none-match'] === `"${p.revision}"`) return record(304), res.writeHead(304, { etag: `"${p.revision}"` }).end();
    record(200);
    res.writeHead(200, { 'content-type': 'application/json', etag: `"${p.revision}"` }).end(JSON.stringify(p));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({ url: `http://127.0.0.1:${port}`, seen, close: () => new Promise<void>((r) => server.close(() => r())) });
    }),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-pod-snapshot-'));
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: TTS_KEY, units: 4 }] });
  const examples = await exampleSnapshot(sim.url);
  tokens = await devTokens(examples);
  config = join(dir, 'pod.yaml');
  await writePodConfig(config, sim.url, ['    default_models: { tts: lightning-v3.1 }']);
  const key = { id: 'snap1', key: new Uint8Array(randomBytes(32)) };
  keys = new Keyring([key]);
  keyFile = join(dir, 'snapshot.key');
  await writeFile(keyFile, `snap1:${Buffer.from(key.key).toString('base64')}\n`, { mode: 0o600 });
  tokenFile = join(dir, 'pod.token');
  await writeFile(tokenFile, `${podToken}\n`, { mode: 0o600 });
  nc = await connect({ servers: NATS });
  bucket = `vg-config-test-${randomBytes(4).toString('hex')}`;
  const js = nc.jetstream();
  kv = await js.views.kv(bucket, { history: 1, replicas: 1 });
  os = await js.views.os(`${bucket}-objects`);
});

afterAll(async () => {
  for (const r of running) await r.stop();
  const jsm = await nc?.jetstreamManager();
  await jsm?.streams.delete(`KV_${bucket}`).catch(() => undefined);
  await jsm?.streams.delete(`OBJ_${bucket}-objects`).catch(() => undefined);
  await nc?.close();
  await sim?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('an edge fed by the control plane over NATS KV', () => {
  it('serves the KV payload, swaps to a newer revision, and reads one the KV value points to in the object store', async () => {
    await publish(payload(1, ['team:voice']));
    const cache = join(dir, 'kv.enc');
    const pod = await edge(['--control-nats', NATS, '--config-bucket', bucket, '--snapshot-cache', cache]);
    expect(await readyz(pod.url)).toBe(200);
    expect(await tts(pod.url, tokens.alice)).toBe(200);
    expect(await tts(pod.url, tokens.mallory)).toBe(403);

    await publish(payload(2, ['user:mallory']));
    await until(() => tts(pod.url, tokens.alice), 403, 'alice after her team was removed');
    expect(await tts(pod.url, tokens.mallory)).toBe(200);

    await publish(payload(3, ['user:bob']), 'object');
    await until(() => tts(pod.url, tokens.bob), 200, 'bob through the object-store payload');
    expect(await tts(pod.url, tokens.mallory)).toBe(403);

    // The disk copy: owner-only, and none of the payload readable in it.
    await pod.stop();
    const info = await stat(cache);
    expect(info.mode & 0o777).toBe(0o600);
    const text = await readFile(cache, 'utf8');
    expect(text).not.toContain('smallest-tts');
    expect(text).not.toContain(TTS_KEY);
  });

  it('a pod that starts before any revision is published is not ready and answers 503, then serves the first one', async () => {
    const own = `vg-config-empty-${randomBytes(3).toString('hex')}`;
    const ownKv = await nc.jetstream().views.kv(own, { history: 1, replicas: 1 });
    try {
      const pod = await edge(['--control-nats', NATS, '--config-bucket', own, '--snapshot-cache', join(dir, 'empty.enc')]);
      expect(await readyz(pod.url)).toBe(503);
      expect(await tts(pod.url, tokens.alice)).toBe(503);
      const text = JSON.stringify(payload(1, ['team:voice']));
      await ownKv.put('snapshot', JSON.stringify({ revision: 1, sha256: payloadSha256(text), payload: text }));
      await until(() => tts(pod.url, tokens.alice), 200, 'alice once revision 1 arrived');
      expect(await readyz(pod.url)).toBe(200);
      await pod.stop();
    } finally {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(`KV_${own}`).catch(() => undefined);
    }
  });

  it('ignores an older revision put after a newer one, refuses a payload whose sha256 does not match or whose object is missing', async () => {
    const local = await loadLocalConfigFile(config);
    const events: SnapshotEvent[] = [];
    const c = controlSnapshotComponent({ local, keyring: keys, nats: { servers: NATS, bucket }, cachePath: join(dir, 'older.enc'), logger: pino({ level: 'silent' }), onEvent: (e) => events.push(e) });
    try {
      await publish(payload(10, ['team:voice']));
      await c.start();
      await until(async () => c.revision, 10, 'revision 10 in force');
      await publish(payload(9, ['user:mallory']));
      await until(async () => events.some((e) => e.type === 'ignored' && e.revision === 9), true, 'revision 9 seen');
      expect(events.find((e) => e.revision === 9)).toEqual({ type: 'ignored', revision: 9, from: 'nats', inForce: 10 });
      expect(c.revision).toBe(10);
      expect([...c.source.current()!.accounts.get('smallest-tts')!.teams]).toEqual(['voice']);

      const p = payload(11, ['user:mallory']);
      await kv.put('snapshot', JSON.stringify({ revision: 11, sha256: payloadSha256('something else'), payload: JSON.stringify(p) }));
      await until(async () => events.some((e) => e.type === 'refused' && e.revision === 11), true, 'revision 11 refused');
      expect(events.find((e) => e.revision === 11 && e.type === 'refused')).toMatchObject({ reason: expect.stringMatching(/sha256/) });
      expect(c.revision).toBe(10);

      // A pointer to an object that is not there: refused, and the watch stays live for the next.
      await kv.put('snapshot', JSON.stringify({ revision: 12, sha256: payloadSha256('x'), object: 'snapshot-12-missing' }));
      await until(async () => events.some((e) => e.type === 'refused' && e.revision === 12), true, 'revision 12 refused');
      expect(c.natsUp).toBe(true);
      await publish(payload(13, ['user:mallory']), 'object');
      await until(async () => c.revision, 13, 'revision 13 after the refused ones');
    } finally {
      await c.close();
    }
  });

  it('refuses a revision whose token was sealed under another snapshot key and keeps serving the one in force', async () => {
    const local = await loadLocalConfigFile(config);
    const events: SnapshotEvent[] = [];
    const c = controlSnapshotComponent({ local, keyring: keys, nats: { servers: NATS, bucket }, cachePath: join(dir, 'wrong-key.enc'), logger: pino({ level: 'silent' }), onEvent: (e) => events.push(e) });
    try {
      await publish(payload(20, ['team:voice']));
      await c.start();
      await until(async () => c.revision, 20, 'revision 20 in force');
      const own = keys;
      keys = new Keyring([{ id: 'snap1', key: new Uint8Array(randomBytes(32)) }]);
      try {
        await publish(payload(21, ['user:mallory']));
      } finally {
        keys = own;
      }
      await until(async () => events.some((e) => e.type === 'refused' && e.revision === 21), true, 'revision 21 refused');
      expect(events.find((e) => e.revision === 21)).toMatchObject({ reason: expect.stringMatching(/token of account "smallest-tts" does not open/) });
      expect(c.revision).toBe(20);
      expect(c.source.current()!.accounts.get('smallest-tts')!.token).toBe(TTS_KEY);
    } finally {
      await c.close();
    }
  });
});

describe('an edge whose NATS is unreachable', () => {
  it('polls the control plane over HTTP with If-None-Match, serves what it answers, and keeps serving on 304', async () => {
    let current: DataPlaneSnapshot | undefined = payload(5, ['team:voice']);
    const cp = await controlPlane(() => current);
    try {
      const closed = await freePort();
      const pod = await edge(['--control-nats', `nats://127.0.0.1:${closed}`, '--config-bucket', bucket, '--control-url', cp.url, '--pod-token-file', tokenFile, '--snapshot-cache', join(dir, 'http.enc')]);
      expect(await tts(pod.url, tokens.alice)).toBe(200);
      expect(cp.seen[0]).toEqual({ auth: `Bearer ${podToken}`, ifNoneMatch: undefined, status: 200 });
      await until(async () => cp.seen.filter((s) => s.ifNoneMatch === '"5"' && s.status === 304).length >= 2, true, 'polls answered 304');
      expect(await tts(pod.url, tokens.alice)).toBe(200);

      current = payload(6, ['user:mallory']);
      await until(() => tts(pod.url, tokens.mallory), 200, 'mallory after revision 6 over HTTP');
      expect(await tts(pod.url, tokens.alice)).toBe(403);
      await pod.stop();
    } finally {
      await cp.close();
    }
  });

  it('restarted with neither NATS nor the control plane, serves its disk copy; with no copy either it is not ready and answers 503', async () => {
    const cache = join(dir, 'restart.enc');
    const cp = await controlPlane(() => payload(8, ['user:bob']));
    const closed = await freePort();
    const flags = ['--control-nats', `nats://127.0.0.1:${closed}`, '--control-url', cp.url, '--pod-token-file', tokenFile, '--snapshot-cache', cache];
    const first = await edge(flags);
    expect(await tts(first.url, tokens.bob)).toBe(200);
    await first.stop();
    await cp.close();

    // Both away now: the control plane's port is closed, NATS never was there.
    const second = await edge(flags);
    expect(await readyz(second.url)).toBe(200);
    expect(await tts(second.url, tokens.bob)).toBe(200);
    expect(await tts(second.url, tokens.alice)).toBe(403);
    await second.stop();

    const fresh = await edge([...flags.slice(0, -1), join(dir, 'never-written.enc')]);
    expect(await readyz(fresh.url)).toBe(503);
    expect(await tts(fresh.url, tokens.bob)).toBe(503);
    await fresh.stop();
  });

  it('refuses a disk copy that was altered: not ready rather than serving it', async () => {
    const cache = join(dir, 'tamper.enc');
    const cp = await controlPlane(() => payload(4, ['user:bob']));
    const closed = await freePort();
    const flags = ['--control-nats', `nats://127.0.0.1:${closed}`, '--control-url', cp.url, '--pod-token-file', tokenFile, '--snapshot-cache', cache];
    const first = await edge(flags);
    expect(await tts(first.url, tokens.bob)).toBe(200);
    await first.stop();
    await cp.close();
    const copy = JSON.parse(await readFile(cache, 'utf8')) as { payload: string };
    const bytes = Buffer.from(copy.payload, 'base64');
    bytes[bytes.length - 20]! ^= 1;
    await writeFile(cache, JSON.stringify({ ...copy, payload: bytes.toString('base64') }), { mode: 0o600 });
    const second = await edge(flags);
    expect(await readyz(second.url)).toBe(503);
    expect(await tts(second.url, tokens.bob)).toBe(503);
    await second.stop();
  });
});

describe('voicegate extproc fed by the control plane', () => {
  it('is not ready on its side port until a snapshot arrives over NATS, then is', async () => {
    const own = `vg-config-extproc-${randomBytes(3).toString('hex')}`;
    const ownKv = await nc.jetstream().views.kv(own, { history: 1, replicas: 1 });
    const httpPort = await freePort();
    const ac = new AbortController();
    let stderr = '';
    const code = main(['extproc', '--config', config, '--port', '0', '--http-port', String(httpPort), '--spool-dir', join(dir, 'extproc-spool'), '--control-nats', NATS, '--config-bucket', own, '--snapshot-key-file', keyFile, '--snapshot-cache', join(dir, 'extproc.enc')], ac.signal, { env: QUIET, stdout: () => {}, stderr: (s) => (stderr += s) });
    try {
      const side = `http://127.0.0.1:${httpPort}`;
      await until(() => readyz(side).catch(() => 0), 503, `extproc side port (${stderr})`);
      const p = payload(30, ['team:voice']);
      const text = JSON.stringify(p);
      await ownKv.put('snapshot', JSON.stringify({ revision: 30, sha256: payloadSha256(text), payload: text }));
      await until(() => readyz(side), 200, 'extproc ready once revision 30 arrived');
    } finally {
      ac.abort();
      expect(await code).toBe(0);
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(`KV_${own}`).catch(() => undefined);
    }
  });

  it('SIGHUP-style reload recompiles the revision in force with the edited file', async () => {
    const file = join(dir, 'reload.yaml');
    await writeFile(file, await readFile(config, 'utf8'));
    const c = controlSnapshotComponent({ local: await loadLocalConfigFile(file), configPath: file, keyring: keys, nats: { servers: NATS, bucket }, cachePath: join(dir, 'reload.enc'), logger: pino({ level: 'silent' }) });
    try {
      await publish(payload(40, ['team:voice']));
      await c.start();
      await until(async () => c.revision, 40, 'revision 40 in force');
      expect(c.source.current()!.principalLimits?.teams.get('voice')).toBeUndefined();
      await writeFile(file, `${await readFile(config, 'utf8')}limits:\n  teams:\n    voice: { max_units: 1 }\n`);
      expect(await c.reload()).toBe(true);
      expect(c.source.current()!.principalLimits?.teams.get('voice')).toEqual({ maxUnits: 1 });
      expect(c.revision).toBe(40);
      await writeFile(file, `${await readFile(config, 'utf8')}models: []\n`);
      expect(await c.reload()).toBe(false);
      expect(c.source.current()!.principalLimits?.teams.get('voice')).toEqual({ maxUnits: 1 });
    } finally {
      await c.close();
    }
  });
});

describe('voicegate edge flags', () => {
  it('refuses accounts in the file of a control-plane pod, and a control URL without a pod token', async () => {
    const withAccounts = join(dir, 'with-accounts.yaml');
    await writeFile(withAccounts, `${await readFile(config, 'utf8')}accounts: []\n`);
    let stderr = '';
    const ext = { env: QUIET, stdout: () => {}, stderr: (s: string) => (stderr += s) };
    const ac = new AbortController();
    expect(await main(['edge', '--config', withAccounts, '--control-nats', NATS, '--snapshot-key-file', keyFile, '--port', '0'], ac.signal, ext)).toBe(1);
    expect(stderr).toMatch(/accounts: comes from the control plane/);
    stderr = '';
    expect(await main(['edge', '--config', config, '--control-url', 'http://127.0.0.1:1', '--snapshot-key-file', keyFile, '--port', '0'], ac.signal, ext)).toBe(2);
    expect(stderr).toMatch(/--pod-token-file/);
    stderr = '';
    expect(await main(['edge', '--config', config, '--control-nats', NATS, '--port', '0'], ac.signal, ext)).toBe(2);
    expect(stderr).toMatch(/VOICEGATE_SNAPSHOT_KEY/);
  });
});
