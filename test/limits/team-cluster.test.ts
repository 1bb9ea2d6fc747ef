/**
 * User and team caps across pods (issue 12): three real edges in one process, each with its own
 * admission ledger leasing grants from one NATS KV bucket (unique per run), in front of one
 * simulator whose key has 10 units. A team's `max_units` and a user's `max_sessions` hold across
 * every pod, as the account's units do: a counting proxy between the edges and the simulator
 * records, per team, the most requests the provider ever had in flight.
 */
import { createServer as createHttpServer, request as httpRequest, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'nats';
import WebSocket from 'ws';
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
import { DEV_IDENTITY_YAML } from './stack.ts';
import { uniqueName } from '../usage/helpers.ts';

const SHARED_NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
/** The header the test's clients send so that the proxy can count the provider's load per team. */
const TEAM_HEADER = 'x-test-team';

/** A proxy that counts what the provider has in flight, per team. */
interface Meter {
  readonly url: string;
  readonly inFlight: Map<string, number>;
  readonly peak: Map<string, number>;
  providerRefusals: number;
  close(): Promise<void>;
}

async function startMeter(target: string): Promise<Meter> {
  const t = new URL(target);
  const meter: Meter = { url: '', inFlight: new Map(), peak: new Map(), providerRefusals: 0, close: async () => {} };
  const server: Server = createHttpServer((req, res) => {
    const team = String(req.headers[TEAM_HEADER] ?? '');
    const now = (meter.inFlight.get(team) ?? 0) + 1;
    meter.inFlight.set(team, now);
    meter.peak.set(team, Math.max(meter.peak.get(team) ?? 0, now));
    let done = false;
    const end = () => {
      if (!done) {
        done = true;
        meter.inFlight.set(team, (meter.inFlight.get(team) ?? 1) - 1);
      }
    };
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
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return Object.assign(meter, {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
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
}

const closers: (() => Promise<void>)[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.terminate();
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

/** `upstream`: `meter` puts the counting proxy (REST only) before the simulator; `direct` for WebSockets. */
async function startCluster(opts: { limits: string; upstream: 'meter' | 'direct' }): Promise<Cluster> {
  const key = (await readFile(join(EXAMPLES_DIR, 'dev/smallest-tts.key'), 'utf8')).trim();
  const sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'realistic', firstAudioMs: 20, speedFactor: 20, accounts: [{ key, units: 10 }] });
  closers.push(() => sim.close());
  const meter = await startMeter(sim.url);
  closers.push(() => meter.close());
  const yaml = `
version: 1
${DEV_IDENTITY_YAML}providers:
  smallest:
    upstream: ${opts.upstream === 'meter' ? meter.url : sim.url}
    default_models: { tts: lightning-v3.1 }
accounts:
  - name: smallest-tts
    token: file:dev/smallest-tts.key
    concurrency: 10
    collaborators: { teams: [voice, studio] }
models:
  - { name: lightning-v3.1, type: tts, account: smallest-tts }
limits:
${opts.limits}
`;
  const snapshot = await loadSnapshotFromText(yaml, { origin: 'test:team-cluster', baseDir: EXAMPLES_DIR });
  const source = new StaticSnapshotSource(snapshot);
  const bucket = uniqueName('vg_grants');
  const pods: Pod[] = [];
  for (let i = 0; i < 3; i++) {
    const grants = new ClusterGrants({ store: await NatsKvGrantStore.connect(SHARED_NATS, bucket), podId: `pod-${i}` });
    const ledger = createAdmissionLedger({ grants });
    grants.bind(
      ledgerUsage((scope, name, resource) => ledger.inUse(scope, name, resource)),
      (scope, name, resource) => ledger.inUse(scope, name, resource),
    );
    await grants.start(snapshot.accounts.values(), snapshot.principalLimits);
    const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), limits: ledger });
    closers.push(async () => {
      await edge.close();
      await grants.close().catch(() => undefined);
    });
    pods.push({ edge, ledger, grants });
  }
  closers.push(async () => {
    const nc = await connect({ servers: SHARED_NATS, reconnect: false }).catch(() => undefined);
    if (nc) {
      await (await nc.jetstreamManager()).streams.delete(`KV_${bucket}`).catch(() => undefined);
      await nc.close();
    }
  });
  return { sim, meter, snapshot, pods };
}

interface Answer {
  readonly status: number;
  readonly code?: string;
  readonly scope?: string;
  readonly limit?: string;
  readonly message?: string;
}

async function speak(pod: Pod, token: string, team: string, delayMs: number): Promise<Answer> {
  const r = await fetch(`${pod.edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-sim-delay-ms': String(delayMs), [TEAM_HEADER]: team },
    body: JSON.stringify({ text: 'Hello from the team', voice_id: 'magnus' }),
  });
  if (r.status === 200) {
    await r.arrayBuffer();
    return { status: 200 };
  }
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string; scope?: string; limit?: string; message?: string } };
  return { status: r.status, ...body.error };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Tries up to 6 times, 300 ms apart, until served; every answer in order. */
async function served(pod: Pod, token: string, team: string): Promise<Answer[]> {
  const out: Answer[] = [];
  for (let i = 0; i < 6; i++) {
    out.push(await speak(pod, token, team, 100));
    if (out.at(-1)!.status === 200) break;
    await sleep(300);
  }
  return out;
}

/** Opens a TTS WebSocket on `pod`: 'open', or the refused upgrade's status and error body. */
function openTts(pod: Pod, token: string): Promise<{ open: true; ws: WebSocket } | { open: false; status: number; error: { code?: string; limit?: string } }> {
  const ws = new WebSocket(`${pod.edge.url.replace(/^http/, 'ws')}/smallest/waves/v1/lightning-v3.1/get_speech/stream`, { headers: { authorization: `Bearer ${token}` } });
  ws.on('error', () => {});
  sockets.push(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ open: true, ws }));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { error?: { code?: string; limit?: string } };
        resolve({ open: false, status: res.statusCode ?? 0, error: body.error ?? {} });
      });
    });
    ws.once('error', reject);
  });
}

describe('user and team caps across pods', () => {
  it('a team with max_units 2 on an account of 10 units has at most 2 in flight at the provider across three edges; the rest get 429 naming the team; another team is served', async () => {
    const c = await startCluster({ upstream: 'meter', limits: '  teams: { voice: { max_units: 2 } }' });
    const voice = await Promise.all(['alice', 'bob', 'carol'].map((user) => signDevToken(c.snapshot, { user, teams: ['voice'] })));
    const studio = await signDevToken(c.snapshot, { user: 'sam', teams: ['studio'] });

    // 30 long requests of team voice, spread over the three edges; meanwhile, team studio on each edge.
    const burst = Promise.all(Array.from({ length: 30 }, (_, i) => speak(c.pods[i % 3]!, voice[i % 3]!, 'voice', 1500)));
    await sleep(200);
    const others = await Promise.all(c.pods.map((pod) => served(pod, studio, 'studio')));
    const answers = await burst;

    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status !== 200);
    console.log(`team voice: ${ok.length} served, ${refused.length} refused; provider peak for voice ${c.meter.peak.get('voice')}`);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(2);
    expect(c.meter.peak.get('voice')).toBeLessThanOrEqual(2);
    for (const a of refused) {
      expect(a).toMatchObject({ status: 429, code: 'team_limit_exceeded', scope: 'team', limit: 'max_units' });
      // The refusal names the team's cap, not this pod's share of it.
      expect(a.message).toContain('team "voice" has 2 concurrency unit(s)');
    }
    // Team voice at its cap does not stop team studio on any edge. An edge whose account grant
    // voice had used may refuse studio's first try naming the account (and borrow): a retry serves it.
    for (const tries of others) {
      expect(tries.at(-1)!.status).toBe(200);
      for (const a of tries.slice(0, -1)) expect(a).toMatchObject({ status: 429, code: 'account_limit_exceeded' });
    }
    expect(c.meter.providerRefusals).toBe(0);

    // Once the burst ended the team's units are free again, on whichever edges ask for them.
    const again = await Promise.all(Array.from({ length: 12 }, (_, i) => speak(c.pods[i % 3]!, voice[i % 3]!, 'voice', 800)));
    expect(again.filter((a) => a.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(c.meter.peak.get('voice')).toBeLessThanOrEqual(2);
  });

  it('a team can use its whole cap through one edge while the other edges are idle', async () => {
    const c = await startCluster({ upstream: 'meter', limits: '  teams: { voice: { max_units: 2 } }' });
    const token = await signDevToken(c.snapshot, { user: 'alice', teams: ['voice'] });
    // The last edge started with no share of the team (the first two took the cap as headroom).
    const pod = c.pods[2]!;
    const held: Promise<Answer>[] = [];
    const refusals: Answer[] = [];
    const deadline = Date.now() + 8000;
    while ((c.meter.inFlight.get('voice') ?? 0) < 2 && Date.now() < deadline) {
      const a = speak(pod, token, 'voice', 4000);
      const first = await Promise.race([a, sleep(300).then(() => undefined)]);
      if (first === undefined) held.push(a);
      else {
        refusals.push(first);
        await sleep(100);
      }
    }
    console.log(`one edge holding both units of the team after ${refusals.length} refusal(s), ${8000 - (deadline - Date.now())} ms`);
    expect(c.meter.inFlight.get('voice')).toBe(2);
    // Misses on the way name the team (this edge's share) or the account (its grant); each borrowed.
    for (const a of refusals) expect(a.status).toBe(429);
    // At the cap, every edge refuses the team.
    for (const p of c.pods) expect(await speak(p, token, 'voice', 0)).toMatchObject({ status: 429, code: 'team_limit_exceeded' });
    for (const a of await Promise.all(held)) expect(a.status).toBe(200);
    expect(c.meter.peak.get('voice')).toBe(2);
  });

  it('a user with max_sessions 2 has at most 2 TTS WebSockets open at the provider across three edges; the others are refused before the upgrade', async () => {
    const c = await startCluster({ upstream: 'direct', limits: '  users: { dave: { max_sessions: 2 } }' });
    const dave = await signDevToken(c.snapshot, { user: 'dave', teams: ['voice'] });
    const tries = await Promise.all(Array.from({ length: 12 }, (_, i) => openTts(c.pods[i % 3]!, dave)));
    const open = tries.filter((t) => t.open);
    expect(open.length).toBeGreaterThanOrEqual(1);
    expect(open.length).toBeLessThanOrEqual(2);
    for (const t of tries) if (!t.open) expect(t).toMatchObject({ status: 429, error: { code: 'user_limit_exceeded', limit: 'max_sessions' } });
    const [usage] = c.sim.unitUsage();
    expect(usage!.peakTtsSockets).toBeLessThanOrEqual(2);
    expect(usage!.refusals).toBe(0);

    // Someone else is not held by dave's cap, on any edge.
    const erin = await signDevToken(c.snapshot, { user: 'erin', teams: ['voice'] });
    for (const pod of c.pods) expect((await openTts(pod, erin)).open).toBe(true);
  });
});
