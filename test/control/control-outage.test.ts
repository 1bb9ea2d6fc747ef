/**
 * Issue 11, the outages end to end: `voicegate control` (a child process) on a PRIVATE
 * PostgreSQL, publishing to a PRIVATE nats-server, and two `voicegate edge` pods following it (KV,
 * the control URL as HTTP fallback, an encrypted disk copy each), in front of the simulator. The
 * shared servers are never touched. Every request to a pod is counted.
 *
 * 1. baseline: both pods answer 200;
 * 2. PostgreSQL stopped: the pods keep answering 200; admin reads and writes answer 503
 *    problem+json with Retry-After (no connection string in it) instead of hanging; control's
 *    /readyz is 503. PostgreSQL back: control reconnects by itself, and a write reaches the pods;
 * 3. NATS killed: the pods keep serving, and a collaborator removed through the API reaches them
 *    over the HTTP poll. NATS back: the next change arrives over KV again;
 * 4. both down: the pods serve from memory; one pod killed and started again with the same disk
 *    copy becomes ready and serves from that copy.
 *
 * The figures (PostgreSQL stop → first 503, request counts, change → pods over HTTP, restart →
 * ready from disk) are printed, not asserted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotKvValue } from '../../extproc/core/control/snapshot-entry.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { REPO_ROOT } from '../e2e/stack.ts';
import { until, writePodConfig } from './pod-fixtures.ts';
import { PrivateNats } from '../setup/private-nats.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../setup/private-postgres.ts';

const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const TTS_KEY = `sk_outage_${randomBytes(12).toString('hex')}`;
/** Trust authentication ignores it; it is in the connection string so a leak would show. */
const DB_PASSWORD = `pw${randomBytes(8).toString('hex')}`;
const BUCKET = 'vg-outage';
/** An admin call that has not answered by then is a hang, whatever the machine's load. */
const HANG_MS = 15_000;

let dir: string;
let sim: SimulatorHandle;
let pg: PrivatePostgres;
let nats: PrivateNats;
let podConfig: string;
let keyFile: string;
let snapshotKey: string;
const children: ChildProcess[] = [];

// A fresh connection per request: the steps below leave connections idle for seconds (pg_ctl stop,
// a pod restart), and a reused keep-alive socket the server is closing at that instant answers
// ECONNRESET — a client-pool race, not the outage under test.
const fresh = new Agent({ pipelining: 0 });
const fetch: typeof undiciFetch = (input, init) => undiciFetch(input, { ...init, dispatcher: fresh });

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  output(): string;
}

function voicegate(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/voicegate.js'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', NATS_URL: '', DATABASE_URL: '', VOICEGATE_KEK: '', VOICEGATE_SNAPSHOT_KEY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, exited, output: () => out };
}

interface Control extends Proc {
  readonly url: string;
  readonly bootstrapKey: string;
}

async function control(): Promise<Control> {
  const p = voicegate(['control', '--listen', '127.0.0.1:0', '--nats', nats.url, '--config-bucket', BUCKET], {
    DATABASE_URL: `postgres://postgres:${DB_PASSWORD}@127.0.0.1:${pg.port}/postgres`,
    VOICEGATE_KEK: `k1:${randomBytes(32).toString('base64')}`,
    VOICEGATE_SNAPSHOT_KEY: snapshotKey,
  });
  await until(async () => {
    if (p.child.exitCode !== null) throw new Error(`control exited ${p.child.exitCode}:\n${p.output()}`);
    return /admin API on http:\/\/\S+\/admin\/v1 /.test(p.output());
  }, 'control listening', 60_000);
  const url = /admin API on (http:\/\/\S+)\/admin\/v1 /.exec(p.output())![1]!;
  const bootstrapKey = /\b(vg_[A-Za-z0-9_-]{43})\b/.exec(p.output())![1]!;
  return { ...p, url, bootstrapKey };
}

interface Answer {
  readonly status: number;
  readonly type: string | null;
  readonly retryAfter: string | null;
  readonly etag: string | null;
  readonly text: string;
  json(): Record<string, unknown>;
}

function admin(c: Control) {
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(`${c.url}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${c.bootstrapKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(HANG_MS),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type'), retryAfter: res.headers.get('retry-after'), etag: res.headers.get('etag'), text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  return {
    call,
    async ok(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
      const r = await call(method, path, body, headers);
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
      return r;
    },
    async serviceKey(name: string): Promise<string> {
      await this.ok('POST', '/service-accounts', { name });
      return String((await this.ok('POST', `/service-accounts/${name}/keys`, {})).json()['key']);
    },
  };
}

interface Pod extends Proc {
  readonly url: string;
  readonly sideUrl: string;
  /** Answers of every request sent to this pod, by status. */
  readonly counts: Map<number, number>;
}

async function pod(name: string, flags: string[]): Promise<Pod> {
  const p = voicegate(
    ['edge', '--config', podConfig, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--limits', 'pod',
      '--spool-dir', join(dir, `spool-${name}`), '--snapshot-key-file', keyFile, '--snapshot-cache', join(dir, `${name}.enc`), '--snapshot-poll', '200', ...flags],
    {},
  );
  let ready: { url: string; metricsPort: number } | undefined;
  await until(async () => {
    if (p.child.exitCode !== null) throw new Error(`pod ${name} exited ${p.child.exitCode}:\n${p.output()}`);
    const line = p.output().split('\n').find((l) => l.startsWith('{') && l.includes('"edge ready"'));
    if (line) ready = JSON.parse(line) as { url: string; metricsPort: number };
    return ready !== undefined;
  }, `pod ${name} ready`, 60_000);
  return { ...p, url: ready!.url, sideUrl: `http://127.0.0.1:${ready!.metricsPort}`, counts: new Map() };
}

async function tts(p: Pod, key: string): Promise<number> {
  const res = await fetch(`${p.url}${TTS}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Hello through an outage.', voice_id: 'magnus', output_format: 'wav', sample_rate: 16000 }),
    signal: AbortSignal.timeout(HANG_MS),
  });
  await res.arrayBuffer();
  p.counts.set(res.status, (p.counts.get(res.status) ?? 0) + 1);
  return res.status;
}

/** `n` requests on each pod; the statuses seen, by pod. */
async function burst(pods: readonly Pod[], key: string, n: number): Promise<number[][]> {
  return Promise.all(pods.map(async (p) => {
    const seen: number[] = [];
    for (let i = 0; i < n; i++) seen.push(await tts(p, key));
    return seen;
  }));
}

const counted = (p: Pod) => Object.fromEntries([...p.counts].sort(([a], [b]) => a - b));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-outage-'));
  [sim, pg, nats] = await Promise.all([
    startSimulator({ port: 0, profile: 'instant', accounts: [{ key: TTS_KEY, units: 8 }] }),
    startPrivatePostgres(),
    PrivateNats.create(join(dir, 'nats')),
  ]);
  await nats.start();
  podConfig = join(dir, 'pod.yaml');
  await writePodConfig(podConfig, sim.url);
  snapshotKey = `snap1:${randomBytes(32).toString('base64')}`;
  keyFile = join(dir, 'snapshot.key');
  await writeFile(keyFile, `${snapshotKey}\n`, { mode: 0o600 });
}, 90_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await nats?.stop();
  await pg?.destroy();
  await sim?.close();
  await fresh.close();
  await rm(dir, { recursive: true, force: true });
});

describe('voicegate control and two pods through PostgreSQL and NATS outages', () => {
  it('pods keep serving, the admin API answers 503 while PostgreSQL is away, changes travel over HTTP while NATS is, and a restarted pod serves its disk copy', async () => {
    const cp = await control();
    try {
      const api = admin(cp);
      const podToken = join(dir, 'pod.token');
      await writeFile(podToken, `${await api.serviceKey('voicegate-pods')}\n`, { mode: 0o600 });
      const appKey = await api.serviceKey('app');
      const otherKey = await api.serviceKey('other');
      await api.ok('POST', '/accounts', { name: 'smallest-tts', token: TTS_KEY, concurrency_units: 8 });
      await api.ok('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:app', role: 'user' });
      await api.ok('POST', '/accounts/smallest-tts/models', { model_id: 'lightning-v3.1', type: 'tts', aliases: [] });

      const flags = ['--control-nats', nats.url, '--config-bucket', BUCKET, '--control-url', cp.url, '--pod-token-file', podToken];
      const pods = await Promise.all([pod('a', flags), pod('b', flags)]);
      const [a, b] = pods as [Pod, Pod];
      for (const p of pods) await until(async () => (await tts(p, appKey)) === 200, `app allowed on ${p.url}`);
      const figures: string[] = [];

      // (1) Baseline.
      for (const seen of await burst(pods, appKey, 10)) expect(seen).toEqual(Array(10).fill(200));
      for (const p of pods) expect(await tts(p, otherKey)).toBe(403);
      figures.push(`(1) baseline: a ${JSON.stringify(counted(a))}, b ${JSON.stringify(counted(b))}`);

      // (2) PostgreSQL away.
      const stoppedAt = performance.now();
      await pg.stop();
      let first503: Answer | undefined;
      await until(async () => {
        const r = await api.call('GET', '/accounts');
        if (r.status === 503) first503 = r;
        return first503 !== undefined;
      }, 'an admin read answering 503');
      figures.push(`(2) PostgreSQL stop → first admin 503: ${(performance.now() - stoppedAt).toFixed(0)} ms (pg_ctl stop -m fast included)`);
      const before = pods.map((p) => p.counts.get(200) ?? 0);
      const whileDown = await burst(pods, appKey, 20);
      for (const seen of whileDown) expect(seen).toEqual(Array(20).fill(200));
      const answers = [
        first503!,
        await api.call('GET', '/accounts/smallest-tts'),
        await api.call('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:other', role: 'user' }),
        await api.call('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': '"1"' }),
      ];
      const t503 = performance.now();
      await api.call('GET', '/service-accounts');
      const oneCall = performance.now() - t503;
      for (const r of answers) {
        expect(r.status, r.text).toBe(503);
        expect(r.type).toContain('application/problem+json');
        expect(r.json()).toMatchObject({ status: 503, type: 'urn:voicegate:problem:store_unavailable' });
        expect(Number(r.retryAfter)).toBeGreaterThan(0);
        for (const secret of [DB_PASSWORD, String(pg.port), 'postgres://', 'ECONNREFUSED']) expect(r.text).not.toContain(secret);
      }
      expect((await fetch(`${cp.url}/readyz`)).status).toBe(503);
      expect((await fetch(`${cp.url}/healthz`)).status).toBe(200);
      figures.push(`    pods while PostgreSQL is away: ${whileDown.map((s) => `${s.filter((x) => x === 200).length}/${s.length} 200`).join(', ')} (200s before: ${before.join(', ')}); one admin call answers 503 in ${oneCall.toFixed(0)} ms`);

      const restartedAt = performance.now();
      await pg.start();
      await until(async () => (await fetch(`${cp.url}/readyz`)).status === 200, 'control ready again');
      figures.push(`    PostgreSQL start → control /readyz 200: ${(performance.now() - restartedAt).toFixed(0)} ms`);
      await api.ok('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:other', role: 'user' });
      for (const p of pods) await until(async () => (await tts(p, otherKey)) === 200, `other allowed on ${p.url} after PostgreSQL returned`);

      // (3) NATS away: the change travels over the HTTP poll.
      await nats.stop();
      for (const p of pods) await until(async () => p.output().includes('NATS snapshot watch unavailable'), `pod ${p.url} notices NATS is away`);
      const other = await api.ok('GET', '/accounts/smallest-tts/collaborators/service:other');
      const removedAt = performance.now();
      await api.ok('DELETE', '/accounts/smallest-tts/collaborators/service:other', undefined, { 'if-match': other.etag! });
      const viaHttp = await Promise.all(pods.map(async (p) => {
        await until(async () => (await tts(p, otherKey)) === 403, `other refused on ${p.url} over HTTP`);
        return performance.now() - removedAt;
      }));
      for (const p of pods) expect(p.output()).toMatch(/"from":"http"[^\n]*"snapshot swapped"/);
      for (const seen of await burst(pods, appKey, 10)) expect(seen).toEqual(Array(10).fill(200));
      figures.push(`(3) NATS away: collaborator removed → refused on each pod via HTTP poll (200 ms): ${viaHttp.map((t) => t.toFixed(0)).join(', ')} ms`);

      await nats.start();
      for (const p of pods) await until(async () => p.output().includes('NATS snapshot watch is live again'), `pod ${p.url} follows KV again`, 30_000);
      // The publisher retries with backoff (at most 5 s): wait until KV holds control's newest revision.
      const nc = await connect({ servers: nats.url });
      try {
        const kv = await nc.jetstream().views.kv(BUCKET, { bindOnly: true });
        const latest = async () => {
          const e = await kv.get('snapshot');
          return e ? snapshotKvValue.parse(JSON.parse(e.string())).revision : -1;
        };
        const snapRev = async () => Number((await fetch(`${cp.url}/admin/v1/snapshot`, { headers: { authorization: `Bearer ${cp.bootstrapKey}` } })).headers.get('etag')?.slice(1, -1));
        await until(async () => (await latest()) === (await snapRev()), 'KV caught up with control', 30_000);
        await api.ok('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:other', role: 'user' });
        for (const p of pods) await until(async () => (await tts(p, otherKey)) === 200, `other allowed again on ${p.url} over KV`);
        const revision = await latest();
        for (const p of pods) expect(p.output()).toMatch(new RegExp(`"revision":${revision},"from":"nats"[^\\n]*"snapshot swapped"`));
      } finally {
        await nc.close();
      }

      // (4) Both away.
      await Promise.all([nats.stop(), pg.stop()]);
      await until(async () => (await fetch(`${cp.url}/readyz`)).status === 503, 'control not ready without PostgreSQL');
      for (const seen of await burst(pods, appKey, 20)) expect(seen).toEqual(Array(20).fill(200));
      for (const p of pods) expect(await tts(p, otherKey)).toBe(200);

      a.child.kill('SIGKILL');
      await a.exited;
      const restartAt = performance.now();
      const a2 = await pod('a', flags);
      const toReady = performance.now() - restartAt;
      // Of which the pod itself (its first log line to "edge ready"), without Node and tsx starting.
      const logTimes = a2.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { time: number; msg: string });
      const inPod = logTimes.find((l) => l.msg === 'edge ready')!.time - logTimes[0]!.time;
      expect(a2.output()).toMatch(/"from":"disk"[^\n]*"snapshot swapped"/);
      expect(a2.output()).toContain('serving the snapshot disk copy');
      expect((await fetch(`${a2.sideUrl}/readyz`)).status).toBe(200);
      const restarted = (await burst([a2, b], appKey, 20));
      for (const seen of restarted) expect(seen).toEqual(Array(20).fill(200));
      expect(await tts(a2, otherKey)).toBe(200);
      figures.push(`(4) both away: restarted pod ready from its disk copy in ${toReady.toFixed(0)} ms from spawn, ${inPod} ms from its first log line; restarted a ${JSON.stringify(counted(a2))}, b ${JSON.stringify(counted(b))}`);
      figures.push(`    requests before the restart: a ${JSON.stringify(counted(a))}`);

      for (const p of [a, a2, b]) expect(p.output()).not.toContain(TTS_KEY);
      expect(cp.output()).not.toContain(DB_PASSWORD);
      expect(cp.child.exitCode).toBeNull();
      console.log(figures.join('\n'));
    } catch (err) {
      // What control said last is what explains a failure here (it runs as a child process).
      throw new Error(`${(err as Error).message}\ncontrol (exit ${cp.child.exitCode ?? cp.child.signalCode ?? 'none yet'}), last output:\n${cp.output().slice(-4000)}`, { cause: err });
    }
  }, 180_000);
});
