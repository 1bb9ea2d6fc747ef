/**
 * Issue 11 point 7 end to end: `voicegate control` (in process, PGlite in a temporary folder,
 * publishing to a bucket of its own on the machine's NATS) and two `voicegate edge` processes fed
 * by it (--control-nats, with --control-url and a pod key minted through the admin API). The three
 * steps through the API — account with the simulator's token, collaborator, model — let a request
 * through both pods; removing the collaborator makes both refuse it. Commit → visible on both pods
 * is measured over 120 changes and printed (p50/p99, no assertion on time). Every message on the
 * bucket's KV and object subjects is read: none carries the provider token or a vg_ key. A
 * snapshot larger than the server's max_payload (a private nats-server with a small one) travels
 * through the object store, and the superseded object is deleted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from 'nats';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotKvValue } from '../../extproc/core/control/snapshot-entry.ts';
import { main } from '../../extproc/main/main.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { REPO_ROOT } from '../e2e/stack.ts';
import { freePort, until, writePodConfig } from './pod-fixtures.ts';

const NATS = 'nats://127.0.0.1:4222';
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const TTS_KEY = `sk_prop_${randomBytes(12).toString('hex')}`;
const CHANGES = 120;

let dir: string;
let sim: SimulatorHandle;
let podConfig: string;
let keyFile: string;

interface Control {
  readonly url: string;
  readonly bootstrapKey: string;
  readonly stderr: () => string;
  stop(): Promise<number>;
}

/** `voicegate control` through main(); resolves once it listens and printed the bootstrap key. */
async function control(args: string[], env: Record<string, string> = {}): Promise<Control> {
  const ac = new AbortController();
  let stdout = '';
  let stderr = '';
  const code = main(['control', '--listen', '127.0.0.1:0', ...args], ac.signal, { env: { LOG_LEVEL: 'silent', ...env }, stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  let exited: number | undefined;
  void code.then((c) => (exited = c));
  await until(async () => {
    if (exited !== undefined) throw new Error(`control exited ${exited}: ${stderr}`);
    return /admin API on http:\/\/\S+\/admin\/v1 /.test(stderr);
  }, 'control listening', 60_000);
  const url = /admin API on (http:\/\/\S+)\/admin\/v1 /.exec(stderr)![1]!;
  const bootstrapKey = /\b(vg_[A-Za-z0-9_-]{43})\b/.exec(stdout)![1]!;
  return { url, bootstrapKey, stderr: () => stderr, stop: () => (ac.abort(), code) };
}

/** A small admin client: JSON in and out, the ETag kept. */
function admin(c: Control) {
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${c.url}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${c.bootstrapKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, etag: res.headers.get('etag'), json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
  };
  return {
    call,
    async ok(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const r = await call(method, path, body, headers);
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
      return r;
    },
    /** Mints a key of a new service account `name` (shown once). */
    async serviceKey(name: string): Promise<string> {
      await this.ok('POST', '/service-accounts', { name });
      return String((await this.ok('POST', `/service-accounts/${name}/keys`, {})).json['key']);
    },
  };
}

interface Pod {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** A `voicegate edge` process fed by the control plane; resolves once it logged "edge ready". */
async function pod(name: string, flags: string[]): Promise<Pod> {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin/voicegate.js'), 'edge', '--config', podConfig, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--limits', 'pod',
      '--spool-dir', join(dir, `spool-${name}`), '--snapshot-key-file', keyFile, '--snapshot-cache', join(dir, `${name}.enc`), '--snapshot-poll', '200', ...flags],
    { cwd: REPO_ROOT, env: { ...process.env, LOG_LEVEL: 'info', NATS_URL: '', VOICEGATE_SNAPSHOT_KEY: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let url: string | undefined;
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`pod ${name} exited ${child.exitCode}:\n${out}`);
    const line = out.split('\n').find((l) => l.startsWith('{') && l.includes('"edge ready"'));
    if (line) url = String((JSON.parse(line) as { url: string }).url);
    return url !== undefined;
  }, `pod ${name} ready`, 60_000);
  return { url: url!, child, output: () => out, stop: async () => void (child.exitCode === null && child.kill('SIGTERM'), await exited) };
}

async function tts(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}${TTS}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Hello from the control plane.', voice_id: 'magnus', output_format: 'wav', sample_rate: 16000 }),
  });
  await res.arrayBuffer();
  return res.status;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Records every message on the bucket's KV and object-store subjects. */
function sniff(nc: NatsConnection, bucket: string): { messages: string[]; stop(): void } {
  const messages: string[] = [];
  const subs: Subscription[] = [`$KV.${bucket}.>`, `$O.${bucket}-objects.>`].map((subject) =>
    nc.subscribe(subject, {
      callback: (_err, m) => {
        const headers = m.headers ? [...m.headers.keys()].map((k) => `${k}: ${m.headers!.values(k).join(',')}`).join('\n') : '';
        messages.push(`${m.subject}\n${headers}\n${new TextDecoder().decode(m.data)}`);
      },
    }),
  );
  return { messages, stop: () => subs.forEach((s) => s.unsubscribe()) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-propagation-'));
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: TTS_KEY, units: 8 }] });
  podConfig = join(dir, 'pod.yaml');
  await writePodConfig(podConfig, sim.url);
  keyFile = join(dir, 'snapshot.key');
  await writeFile(keyFile, `snap1:${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await sim?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('propagation from voicegate control to two edge pods over NATS', () => {
  const bucket = `vg-prop-${randomBytes(4).toString('hex')}`;
  let nc: NatsConnection;
  let cp: Control | undefined;
  const pods: Pod[] = [];

  afterAll(async () => {
    for (const p of pods) await p.stop();
    await cp?.stop();
    const jsm = await nc?.jetstreamManager();
    await jsm?.streams.delete(`KV_${bucket}`).catch(() => undefined);
    await jsm?.streams.delete(`OBJ_${bucket}-objects`).catch(() => undefined);
    await nc?.close();
  });

  it('the three steps pass a request on both pods, a removed collaborator is refused on both, and no NATS message carries a secret', async () => {
    nc = await connect({ servers: NATS });
    const wire = sniff(nc, bucket);
    cp = await control(['--data-dir', join(dir, 'control', 'data'), '--nats', NATS, '--config-bucket', bucket, '--snapshot-key-file', keyFile]);
    const api = admin(cp);

    const podKey = await api.serviceKey('voicegate-pods');
    const podToken = join(dir, 'pod.token');
    await writeFile(podToken, `${podKey}\n`, { mode: 0o600 });
    const appKey = await api.serviceKey('app');
    const otherKey = await api.serviceKey('other');

    // GET /admin/v1/snapshot: pods and administrators only; ETag "<revision>", 304 on a match.
    const snap = (key: string | undefined, headers: Record<string, string> = {}) =>
      fetch(`${cp!.url}/admin/v1/snapshot`, { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } });
    await until(async () => (await snap(podKey)).status === 200, 'snapshot served to the pod key');
    const first = await snap(podKey);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"\d+"$/);
    expect(first.headers.get('content-type')).toContain('application/json');
    expect(JSON.parse(await first.text())).toMatchObject({ format: 1, revision: Number(etag.slice(1, -1)) });
    expect((await snap(podKey, { 'if-none-match': etag })).status).toBe(304);
    expect((await snap(cp.bootstrapKey)).status).toBe(200);
    expect((await snap(otherKey)).status).toBe(403);
    expect((await snap(undefined)).status).toBe(401);

    // The three steps.
    await api.ok('POST', '/accounts', { name: 'smallest-tts', token: TTS_KEY, concurrency_units: 8 });
    const collaborator = await api.ok('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:app', role: 'user' });
    await api.ok('POST', '/accounts/smallest-tts/models', { model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'] });

    const flags = ['--control-nats', NATS, '--config-bucket', bucket, '--control-url', cp.url, '--pod-token-file', podToken];
    pods.push(await pod('a', flags), await pod('b', flags));
    for (const p of pods) await until(async () => (await tts(p.url, appKey)) === 200, `app allowed on ${p.url}`);
    for (const p of pods) {
      expect(await tts(p.url, appKey)).toBe(200);
      expect(await tts(p.url, otherKey)).toBe(403);
    }

    await api.ok('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': collaborator.etag! });
    for (const p of pods) await until(async () => (await tts(p.url, appKey)) === 403, `app refused on ${p.url}`);

    // Commit → visible on both pods, over CHANGES toggles of the collaborator.
    const both: number[] = [];
    const each: number[] = [];
    const answered: number[] = [];
    let present = false;
    let version: string | null = null;
    for (let i = 0; i < CHANGES; i++) {
      const want = present ? 403 : 200;
      const t0 = performance.now();
      if (present) await api.ok('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': version! });
      else version = (await api.ok('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:app', role: 'user' })).etag;
      present = !present;
      answered.push(performance.now() - t0);
      const seen = await Promise.all(
        pods.map(async (p) => {
          const end = Date.now() + 15_000;
          while ((await tts(p.url, appKey)) !== want) if (Date.now() > end) throw new Error(`change ${i} never visible on ${p.url}`);
          return performance.now() - t0;
        }),
      );
      each.push(...seen);
      both.push(Math.max(...seen));
    }
    both.sort((a, b) => a - b);
    each.sort((a, b) => a - b);
    answered.sort((a, b) => a - b);
    const fmt = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms, max ${xs[xs.length - 1]!.toFixed(1)} ms`;
    console.log(`commit → visible on both pods over ${CHANGES} changes: ${fmt(both)} (each pod: ${fmt(each)}; from the API call's start to the first request that sees it; the API call alone: ${fmt(answered)})`);
    expect(both).toHaveLength(CHANGES);

    // Every message the bucket's subjects carried: snapshots were there, secrets were not.
    wire.stop();
    expect(wire.messages.length).toBeGreaterThan(CHANGES);
    expect(wire.messages.some((m) => m.includes('"sha256"') && m.includes('smallest-tts'))).toBe(true);
    for (const m of wire.messages) {
      expect(m).not.toContain(TTS_KEY);
      expect(m).not.toMatch(/vg_[A-Za-z0-9_-]{20,}/);
      for (const k of [podKey, appKey, otherKey, cp.bootstrapKey]) expect(m).not.toContain(k);
    }
    for (const p of pods) {
      expect(p.output()).toMatch(/"from":"nats"[^\n]*"snapshot swapped"/);
      expect(p.output()).not.toContain(TTS_KEY);
    }
    expect(cp.stderr()).not.toContain(TTS_KEY);
  }, 240_000);
});

describe('a snapshot above the server max_payload', () => {
  it('travels through the object store, reaches a pod, and the superseded object is deleted', async () => {
    const port = await freePort();
    const store = join(dir, 'nats-small');
    await mkdir(store, { recursive: true });
    const conf = join(dir, 'nats-small.conf');
    // 8 KiB: the publisher keeps 4 KiB of margin, so a snapshot above ~4 KiB is put as an object.
    await writeFile(conf, `host: 127.0.0.1\nport: ${port}\nmax_payload: 8192\njetstream { store_dir: "${store}" }\n`);
    const server = spawn('/usr/sbin/nats-server', ['-c', conf], { stdio: 'ignore' });
    const url = `nats://127.0.0.1:${port}`;
    let nc: NatsConnection | undefined;
    let cp: Control | undefined;
    let p: Pod | undefined;
    try {
      await until(async () => {
        nc = await connect({ servers: url, reconnect: false }).catch(() => undefined);
        return nc !== undefined;
      }, 'private nats-server');
      const bucket = 'vg-big';
      cp = await control(['--data-dir', join(dir, 'control-big', 'data'), '--nats', url, '--config-bucket', bucket, '--snapshot-key-file', keyFile]);
      const api = admin(cp);
      const podToken = join(dir, 'pod-big.token');
      await writeFile(podToken, `${await api.serviceKey('voicegate-pods')}\n`, { mode: 0o600 });
      const appKey = await api.serviceKey('app');
      const models = ['  - { name: lightning-v3.1, provider: smallest, account: smallest-tts, type: tts }', ...Array.from({ length: 150 }, (_, i) => `  - { name: filler-${i}, provider: smallest, account: smallest-tts, type: tts }`)];
      const tokenFile = join(dir, 'big-account.key');
      await writeFile(tokenFile, `${TTS_KEY}\n`, { mode: 0o600 });
      const doc = ['accounts:', `  - { name: smallest-tts, provider: smallest, token: "file:${tokenFile}", collaborators: { services: [app] } }`, 'models:', ...models, ''].join('\n');
      const res = await fetch(`${cp.url}/admin/v1/apply`, { method: 'PUT', headers: { authorization: `Bearer ${cp.bootstrapKey}`, 'content-type': 'application/yaml' }, body: doc });
      expect(res.status, await res.clone().text()).toBe(200);

      const js = nc!.jetstream();
      const kv = await js.views.kv(bucket, { bindOnly: true });
      const os = await js.views.os(`${bucket}-objects`);
      const pointer = async () => {
        const e = await kv.get('snapshot');
        return e ? snapshotKvValue.parse(JSON.parse(e.string())) : undefined;
      };
      const revision = Number((await res.json() as { revision: number }).revision);
      await until(async () => (await pointer())?.revision === revision, `revision ${revision} in KV`);
      const v = await pointer();
      expect(v).toMatchObject({ revision, object: `snapshot-${revision}` });
      expect((await os.info(`snapshot-${revision}`))!.size).toBeGreaterThan(8192);

      p = await pod('big', ['--control-nats', url, '--config-bucket', bucket, '--control-url', cp.url, '--pod-token-file', podToken]);
      await until(async () => (await tts(p!.url, appKey)) === 200, 'app allowed through the object-store snapshot');

      const sa = await api.ok('GET', '/accounts/smallest-tts/collaborators/service:app');
      await api.ok('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': sa.etag! });
      await until(async () => (await tts(p!.url, appKey)) === 403, 'app refused after the next object-store snapshot');
      const next = (await pointer())!;
      expect(next.revision).toBeGreaterThan(revision);
      expect(next).toMatchObject({ object: `snapshot-${next.revision}` });
      const names = (await os.list()).map((i) => i.name);
      expect(names).toEqual([`snapshot-${next.revision}`]);
    } finally {
      await p?.stop();
      await cp?.stop();
      await nc?.close();
      server.kill('SIGKILL');
    }
  }, 120_000);
});

describe('voicegate control snapshot key', () => {
  it('on PGlite without one creates a development key beside the data and prints its path; on PostgreSQL without one exits 2', async () => {
    const c = await control(['--data-dir', join(dir, 'dev-key', 'data'), '--bootstrap', 'auto']);
    try {
      expect(c.stderr()).toContain(`development snapshot key ${join(dir, 'dev-key', 'snapshot.key')}`);
      expect(c.stderr()).toContain('--snapshot-key-file');
    } finally {
      expect(await c.stop()).toBe(0);
    }
    let stderr = '';
    const code = await main(['control', '--listen', '127.0.0.1:0', '--database', 'postgres://127.0.0.1:5432/none'], new AbortController().signal, {
      env: { VOICEGATE_KEK: `k1:${randomBytes(32).toString('base64')}` },
      stdout: () => {},
      stderr: (s) => (stderr += s),
    });
    expect(code).toBe(2);
    // One line says why (the other is the notice that no --config means service keys only).
    expect(stderr.trim().split('\n').filter((l) => l.includes('VOICEGATE_SNAPSHOT_KEY'))).toHaveLength(1);
  });
});
