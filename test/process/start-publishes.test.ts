/**
 * Issue 11 point 8: `voicegate start` with NATS_URL publishes each revision of its embedded control
 * plane to the NATS KV bucket --config-bucket, so a separate `voicegate edge` pod follows it. A
 * `start` process on PGlite (temporary --data-dir, its development snapshot key printed with its
 * path) and one `edge` child on that bucket with that key: an account, a collaborator and a model
 * added through start's admin API let a request through the separate edge; removing the
 * collaborator makes it 403 there too. start also serves GET /admin/v1/snapshot (the pods' HTTP
 * fallback). Commit → visible on the separate edge is measured over a few toggles and printed (no
 * assertion on time). On PostgreSQL with NATS and no snapshot key, start exits 2 with one line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotKvValue } from '../../extproc/core/control/snapshot-entry.ts';
import { main } from '../../extproc/main/main.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { REPO_ROOT } from '../e2e/stack.ts';
import { until, writePodConfig } from '../control/pod-fixtures.ts';

const NATS = process.env['NATS_URL'] || 'nats://127.0.0.1:4222';
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const TTS_KEY = `sk_startpub_${randomBytes(12).toString('hex')}`;
const TOGGLES = 20;
const unique = randomBytes(4).toString('hex');
const bucket = `vg-startpub-${unique}`;
const stream = `VG_STARTPUB_${unique}`;

let dir: string;
let sim: SimulatorHandle;
let config: string;
let nc: NatsConnection;
const children: ChildProcess[] = [];

/** A child of bin/voicegate.js with its output collected; `stop` sends SIGTERM and waits. */
function voicegate(args: string[], env: Record<string, string>) {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of ['NATS_URL', 'DATABASE_URL', 'VOICEGATE_KEK', 'VOICEGATE_SNAPSHOT_KEY', 'VOICEGATE_CONFIG_BUCKET', 'VOICEGATE_CONTROL_NATS', 'VOICEGATE_CONTROL_URL']) delete base[k];
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/voicegate.js'), ...args], { cwd: REPO_ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? 'unknown')));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

async function tts(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}${TTS}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Hello from start.', voice_id: 'magnus', output_format: 'wav', sample_rate: 16000 }),
  });
  await res.arrayBuffer();
  return res.status;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-startpub-'));
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: TTS_KEY, units: 8 }] });
  // No accounts or models: the same file is start's (an empty store) and the pod's local sections.
  config = join(dir, 'voicegate.yaml');
  await writePodConfig(config, sim.url);
  nc = await connect({ servers: NATS });
});

afterAll(async () => {
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise<void>((r) => (c.once('exit', () => r()), c.kill('SIGKILL'))) : undefined)));
  const jsm = await nc?.jetstreamManager();
  for (const s of [`KV_${bucket}`, `OBJ_${bucket}-objects`, stream]) await jsm?.streams.delete(s).catch(() => undefined);
  await nc?.close();
  await sim?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('voicegate start with NATS_URL', () => {
  it('publishes each revision to the KV bucket: a separate voicegate edge follows account, collaborator, model and a removed collaborator', { timeout: 240_000 }, async () => {
    const dataDir = join(dir, 'control', 'data');
    const start = voicegate(
      ['start', '--config', config, '--port', '0', '--grpc-port', '0', '--http-port', '0', '--admin-port', '0', '--simulator', 'off', '--limits', 'pod',
        '--data-dir', dataDir, '--spool-dir', join(dir, 'spool-start'), '--config-bucket', bucket, '--stream', stream, '--subject-prefix', `vg.startpub.${unique}`],
      { NATS_URL: NATS, LOG_LEVEL: 'info' },
    );
    // PGlite's first start (migrations) takes seconds on a busy machine.
    await until(async () => {
      if (start.child.exitCode !== null) throw new Error(`start exited ${start.child.exitCode}:\n${start.stderr()}`);
      return start.stdout().includes('Press Ctrl-C to stop.');
    }, 'the start banner', 120_000);
    const banner = start.stdout();
    const adminUrl = /admin API\s+(http:\/\/127\.0\.0\.1:\d+)\/admin\/v1/.exec(banner)![1]!;
    const adminKey = /export VG_ADMIN_KEY=(vg_\S+)/.exec(banner)![1]!;
    // The development snapshot key beside the data, its path on stderr and in the banner.
    const keyFile = join(dir, 'control', 'snapshot.key');
    expect(start.stderr()).toContain(`development snapshot key ${keyFile}`);
    expect(banner).toMatch(new RegExp(`pods' snapshot\\s+NATS KV ${bucket}\\b.*--snapshot-key-file ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

    const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${adminUrl}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${adminKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return { etag: res.headers.get('etag'), json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    };
    const serviceKey = async (name: string) => {
      await call('POST', '/service-accounts', { name });
      return String((await call('POST', `/service-accounts/${name}/keys`, {})).json['key']);
    };
    const podKey = await serviceKey('voicegate-pods');
    const appKey = await serviceKey('app');
    const podToken = join(dir, 'pod.token');
    await writeFile(podToken, `${podKey}\n`, { mode: 0o600 });

    // The HTTP fallback is served to the pod subject, with the revision as ETag.
    const snap = await fetch(`${adminUrl}/admin/v1/snapshot`, { headers: { authorization: `Bearer ${podKey}` } });
    expect(snap.status).toBe(200);
    expect(snap.headers.get('etag')).toMatch(/^"\d+"$/);
    await snap.arrayBuffer();
    expect((await fetch(`${adminUrl}/admin/v1/snapshot`, { headers: { authorization: `Bearer ${appKey}` } })).status).toBe(403);

    const edge = voicegate(
      ['edge', '--config', config, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--limits', 'pod', '--spool-dir', join(dir, 'spool-edge'),
        '--control-nats', NATS, '--config-bucket', bucket, '--snapshot-key-file', keyFile, '--snapshot-cache', join(dir, 'edge.enc'),
        '--control-url', adminUrl, '--pod-token-file', podToken],
      { LOG_LEVEL: 'info' },
    );
    let edgeUrl: string | undefined;
    await until(async () => {
      if (edge.child.exitCode !== null) throw new Error(`edge exited ${edge.child.exitCode}:\n${edge.stdout()}${edge.stderr()}`);
      const line = edge.stdout().split('\n').find((l) => l.startsWith('{') && l.includes('"edge ready"'));
      if (line) edgeUrl = String((JSON.parse(line) as { url: string }).url);
      return edgeUrl !== undefined;
    }, 'the separate edge ready', 60_000);
    const url = edgeUrl!;
    // An empty store: no model of that name yet.
    expect(await tts(url, appKey)).toBe(404);

    // The three steps through start's admin API.
    await call('POST', '/accounts', { name: 'smallest-tts', token: TTS_KEY, concurrency_units: 8 });
    const collaborator = await call('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:app', role: 'user' });
    await call('POST', '/accounts/smallest-tts/models', { model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'] });
    await until(async () => (await tts(url, appKey)) === 200, 'app allowed on the separate edge');
    expect(await tts(url, appKey)).toBe(200);

    // The KV entry carries start's newest revision; the pod took it from NATS, not the HTTP fallback.
    const served = await fetch(`${adminUrl}/admin/v1/snapshot`, { headers: { authorization: `Bearer ${podKey}` } });
    await served.arrayBuffer();
    const newest = Number(served.headers.get('etag')!.slice(1, -1));
    const kv = await nc.jetstream().views.kv(bucket, { bindOnly: true });
    const entry = snapshotKvValue.parse(JSON.parse((await kv.get('snapshot'))!.string()));
    expect(entry.revision).toBe(newest);
    expect(JSON.stringify(entry)).not.toContain(TTS_KEY);
    expect(edge.stdout()).toMatch(/"from":"nats"[^\n]*"snapshot swapped"/);

    await call('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': collaborator.etag! });
    await until(async () => (await tts(url, appKey)) === 403, 'app refused on the separate edge');
    expect(await tts(url, appKey)).toBe(403);

    // Commit → visible on the separate edge, over TOGGLES changes of the collaborator.
    const seen: number[] = [];
    let present = false;
    let version: string | null = null;
    for (let i = 0; i < TOGGLES; i++) {
      const want = present ? 403 : 200;
      const t0 = performance.now();
      if (present) await call('DELETE', '/accounts/smallest-tts/collaborators/service:app', undefined, { 'if-match': version! });
      else version = (await call('POST', '/accounts/smallest-tts/collaborators', { subject: 'service:app', role: 'user' })).etag;
      present = !present;
      await until(async () => (await tts(url, appKey)) === want, `change ${i} visible on the separate edge`, 15_000);
      seen.push(performance.now() - t0);
    }
    seen.sort((a, b) => a - b);
    console.log(`start commit → visible on a separate edge over NATS, ${TOGGLES} changes: p50 ${percentile(seen, 50).toFixed(1)} ms, p99 ${percentile(seen, 99).toFixed(1)} ms, max ${seen[seen.length - 1]!.toFixed(1)} ms`);
    expect(seen).toHaveLength(TOGGLES);

    for (const out of [start.stdout(), start.stderr(), edge.stdout(), edge.stderr()]) expect(out).not.toContain(TTS_KEY);
    expect(await edge.stop()).toBe(0);
    expect(await start.stop()).toBe(0);
  });

  it('on PostgreSQL without a snapshot key exits 2 with one line naming VOICEGATE_SNAPSHOT_KEY', async () => {
    let stderr = '';
    const code = await main(
      ['start', '--config', config, '--simulator', 'off', '--port', '0', '--grpc-port', '0', '--http-port', '0', '--admin-port', '0', '--database', 'postgres://127.0.0.1:5432/none', '--nats', NATS],
      new AbortController().signal,
      { env: { VOICEGATE_KEK: `k1:${randomBytes(32).toString('base64')}`, LOG_LEVEL: 'silent' }, stdout: () => {}, stderr: (s) => (stderr += s) },
    );
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('VOICEGATE_SNAPSHOT_KEY');
  });
});
