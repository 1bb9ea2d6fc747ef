/**
 * Account units across pods (issue 12, point 4): several real edges in one process, each with its
 * own admission ledger leasing grants from one NATS KV bucket (unique per run), in front of one
 * simulator whose key has N units. A counting proxy between the edges and the simulator records
 * the most requests the provider ever had in flight and every 429 it had to answer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { ClusterGrants, ledgerUsage, NatsKvGrantStore } from '../../extproc/adapters/nats/grant-ledger.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { EXAMPLES_DIR } from '../e2e/stack.ts';
import { eventually, uniqueName } from '../usage/helpers.ts';
import { readFile } from 'node:fs/promises';

const SHARED_NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** A proxy that counts what the provider has in flight. */
interface Meter {
  readonly url: string;
  inFlight: number;
  peak: number;
  providerRefusals: number;
  close(): Promise<void>;
}

async function startMeter(target: string): Promise<Meter> {
  const t = new URL(target);
  const meter = { url: '', inFlight: 0, peak: 0, providerRefusals: 0, close: async () => {} };
  const server: Server = createHttpServer((req, res) => {
    meter.inFlight++;
    meter.peak = Math.max(meter.peak, meter.inFlight);
    let done = false;
    const end = () => {
      if (!done) {
        done = true;
        meter.inFlight--;
      }
    };
    // The client went away before the answer ended: so does the provider's request.
    res.once('close', () => {
      end();
      if (!res.writableFinished) up.destroy();
    });
    const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      if (ur.statusCode === 429) meter.providerRefusals++;
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.once('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  meter.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  meter.close = () => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });
  return meter;
}

interface Pod {
  readonly edge: EdgeHandle;
  readonly ledger: AdmissionLedger;
  readonly grants: ClusterGrants;
}

interface Cluster {
  readonly sim: SimulatorHandle;
  readonly meter: Meter;
  readonly snapshot: Snapshot;
  readonly pods: Pod[];
  token(user: string): Promise<string>;
  close(): Promise<void>;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

async function startCluster(opts: { units: number; pods: number; natsUrl?: string; bucket?: string }): Promise<Cluster> {
  const key = (await readFile(join(EXAMPLES_DIR, 'dev/smallest-tts.key'), 'utf8')).trim();
  const sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'realistic', firstAudioMs: 20, speedFactor: 20, accounts: [{ key, units: opts.units }] });
  closers.push(() => sim.close());
  const meter = await startMeter(sim.url);
  closers.push(() => meter.close());
  const yaml = `
version: 1
identity:
  issuers:
    - issuer: https://voicegate.local/dev
      audiences: [voicegate]
      jwks: file:dev/jwks.json
      algorithms: [ES256, RS256, EdDSA]
      dev_signing_key: file:dev/signing-key.jwk.json
providers:
  smallest:
    upstream: ${meter.url}
    default_models: { tts: lightning-v3.1 }
accounts:
  - name: smallest-tts
    token: file:dev/smallest-tts.key
    concurrency: ${opts.units}
    collaborators: { teams: [voice] }
models:
  - { name: lightning-v3.1, type: tts, account: smallest-tts }
`;
  const snapshot = await loadSnapshotFromText(yaml, { origin: 'test:cluster-ledger', baseDir: EXAMPLES_DIR });
  const source = new StaticSnapshotSource(snapshot);
  const bucket = opts.bucket ?? uniqueName('vg_grants');
  const natsUrl = opts.natsUrl ?? SHARED_NATS;
  const pods: Pod[] = [];
  for (let i = 0; i < opts.pods; i++) {
    const grants = new ClusterGrants({ store: await NatsKvGrantStore.connect(natsUrl, bucket), podId: `pod-${i}` });
    const ledger = createAdmissionLedger({ grants });
    grants.bind(ledgerUsage((scope, name, resource) => ledger.inUse(scope, name, resource)));
    await grants.start(snapshot.accounts.values());
    const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), limits: ledger });
    closers.push(async () => {
      await edge.close();
      await grants.close().catch(() => undefined);
    });
    pods.push({ edge, ledger, grants });
  }
  closers.push(async () => {
    // The run's bucket goes with it.
    const nc = await connect({ servers: natsUrl, reconnect: false }).catch(() => undefined);
    if (nc) {
      await (await nc.jetstreamManager()).streams.delete(`KV_${bucket}`).catch(() => undefined);
      await nc.close();
    }
  });
  return { sim, meter, snapshot, pods, token: (user) => signDevToken(snapshot, { user, teams: ['voice'] }), close: async () => {} };
}

interface Answer {
  readonly status: number;
  readonly code?: string;
}

async function speak(pod: Pod, token: string, delayMs: number, signal?: AbortSignal): Promise<Answer> {
  const r = await fetch(`${pod.edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-sim-delay-ms': String(delayMs) },
    body: JSON.stringify({ text: 'Hello from the cluster', voice_id: 'magnus' }),
    ...(signal ? { signal } : {}),
  });
  if (r.status === 200) {
    await r.arrayBuffer();
    return { status: 200 };
  }
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: r.status, ...(body.error?.code ? { code: body.error.code } : {}) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inUse = (p: Pod) => p.ledger.inUse('account', 'smallest-tts', 'tts_units');

describe('grants leased across pods from NATS KV', () => {
  it('three edges, 4 units, 40 concurrent long requests: the provider never has more than 4 in flight, the rest get 429, and every edge serves', async () => {
    const c = await startCluster({ units: 4, pods: 3 });
    const token = await c.token('alice');
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => speak(c.pods[i % 3]!, token, 1500).then((a) => ({ ...a, pod: i % 3 }))));
    const ok = answers.filter((a) => a.status === 200);
    expect(ok.length).toBeGreaterThanOrEqual(3);
    expect(ok.length).toBeLessThanOrEqual(4);
    for (const a of answers.filter((x) => x.status !== 200)) expect(a).toMatchObject({ status: 429, code: 'account_limit_exceeded' });
    // Each edge held a unit from its start (the headroom), so each served in the burst.
    expect(new Set(ok.map((a) => a.pod)).size).toBe(3);
    expect(c.meter.peak).toBeLessThanOrEqual(4);
    expect(c.meter.providerRefusals).toBe(0);

    // A second burst once everything was released: still never above the units.
    const again = await Promise.all(Array.from({ length: 40 }, (_, i) => speak(c.pods[i % 3]!, token, 300).then((a) => ({ ...a, pod: i % 3 }))));
    expect(new Set(again.filter((a) => a.status === 200).map((a) => a.pod)).size).toBe(3);
    expect(c.meter.peak).toBeLessThanOrEqual(4);
    expect(c.meter.providerRefusals).toBe(0);
  });

  it('a busy edge borrows the idle units of the others, and a dead edge (no heartbeat, nothing returned) loses its units within 4 s', async () => {
    const c = await startCluster({ units: 4, pods: 2 });
    const [a, b] = c.pods as [Pod, Pod];
    const token = await c.token('alice');
    const abort = new AbortController();
    // Edge a takes all 4 units (b gives its idle headroom back once a asks for more).
    const held: Promise<unknown>[] = [];
    await eventually(async () => {
      if (inUse(a) < 4) held.push(speak(a, token, 20_000, abort.signal).catch(() => undefined));
      await sleep(50);
      return inUse(a) === 4;
    }, 10_000, 'edge a holding all 4 units');
    expect(c.meter.peak).toBeLessThanOrEqual(4);
    expect((await speak(b, token, 0)).status).toBe(429);

    // Death: a stops heartbeating and never gives anything back; its connections go.
    await a.grants.abandon();
    const died = Date.now();
    abort.abort();
    await a.edge.close();
    await Promise.all(held);

    const longHeld = new AbortController();
    const onB: Promise<unknown>[] = [];
    await eventually(async () => {
      if (inUse(b) < 4) onB.push(speak(b, token, 20_000, longHeld.signal).catch(() => undefined));
      await sleep(50);
      return inUse(b) === 4;
    }, 8000, 'edge b using all 4 units');
    const tookMs = Date.now() - died;
    console.log(`dead edge's 4 units usable by another edge after ${tookMs} ms`);
    expect(tookMs).toBeLessThan(4500);
    expect(c.meter.peak).toBeLessThanOrEqual(4);
    expect(c.meter.providerRefusals).toBe(0);
    longHeld.abort();
    await Promise.all(onB);
  });
});

describe('an edge cut off from the grant ledger', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'vg-grants-'));
  let server: ChildProcess | undefined;
  afterEach(async () => {
    const s = server;
    server = undefined;
    if (s && s.exitCode === null && s.signalCode === null) await new Promise<void>((r) => (s.once('exit', () => r()), s.kill('SIGKILL')));
    rmSync(tmp, { recursive: true, force: true });
  });

  it('admits at most its grant while the ledger is away, and nothing once its lease could have been reclaimed', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    // A private nats-server: this test stops it (never the machine's shared one).
    server = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(tmp, 'js')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${port}`;
    await eventually(async () => {
      const nc = await connect({ servers: natsUrl, reconnect: false }).catch(() => undefined);
      await nc?.close();
      return nc !== undefined;
    }, 10_000, 'nats-server up');
    const c = await startCluster({ units: 6, pods: 2, natsUrl });
    const [a] = c.pods as [Pod, Pod];
    const token = await c.token('alice');
    const account = c.snapshot.accounts.get('smallest-tts')!;
    // Make a borrow beyond the headroom, then let it settle.
    await Promise.all([speak(a, token, 400), speak(a, token, 400), speak(a, token, 400)]);
    await a.grants.heartbeat();
    const grant = a.grants.units(account, 'tts');
    expect(grant).toBeGreaterThanOrEqual(1);

    const s = server;
    await new Promise<void>((r) => (s.once('exit', () => r()), s.kill('SIGKILL')));
    const cut = Date.now();
    const burst = await Promise.all(Array.from({ length: grant + 3 }, () => speak(a, token, 300)));
    expect(burst.filter((x) => x.status === 200).length).toBe(grant);
    for (const x of burst.filter((y) => y.status !== 200)) expect(x).toMatchObject({ status: 429, code: 'account_limit_exceeded' });

    // Lease 3 s from the last heartbeat, minus the 750 ms margin: by 3 s after the cut, nothing.
    await sleep(Math.max(0, 3000 - (Date.now() - cut)));
    expect(inUse(a)).toBe(0);
    expect(a.grants.units(account, 'tts')).toBe(0);
    expect(await speak(a, token, 0)).toMatchObject({ status: 429, code: 'account_limit_exceeded' });
    expect(c.meter.peak).toBeLessThanOrEqual(6);
  });
});
