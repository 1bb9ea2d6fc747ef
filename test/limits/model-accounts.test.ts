/**
 * Several accounts serving one model, through the in-process edge and the simulator (which
 * enforces units per key as the provider does): concurrent syntheses spread over the accounts, a
 * provider 429 before the first byte moves the request once to another account, and the span names
 * the account that served it and bills that account's price.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { EXAMPLES_DIR } from '../e2e/stack.ts';
import { DEV_IDENTITY_YAML } from './stack.ts';
import { until } from '../edge/helpers.ts';

interface Rig {
  readonly edge: EdgeHandle;
  readonly sim: SimulatorHandle;
  readonly snapshot: Snapshot;
  readonly ledger: AdmissionLedger;
  readonly spans: UsageSpan[];
  readonly keys: { readonly one: string; readonly two: string };
  close(): Promise<void>;
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

/** Two TTS accounts serving lightning-v3.1; `concurrency` as the config claims, the simulator sells 1 unit per key. */
async function start(concurrency: { one: number; two: number }): Promise<Rig> {
  const keys = {
    one: (await readFile(join(EXAMPLES_DIR, 'dev/smallest-tts.key'), 'utf8')).trim(),
    two: (await readFile(join(EXAMPLES_DIR, 'dev/smallest-tts-2.key'), 'utf8')).trim(),
  };
  const sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.one, units: 1 }, { key: keys.two, units: 1 }] });
  const yaml = `
version: 1
${DEV_IDENTITY_YAML}providers:
  smallest:
    upstream: ${sim.url}
accounts:
  - { name: smallest-tts, token: file:dev/smallest-tts.key, concurrency: ${concurrency.one}, collaborators: { teams: [studio] } }
  - { name: smallest-tts-2, token: file:dev/smallest-tts-2.key, concurrency: ${concurrency.two}, collaborators: { teams: [studio] } }
models:
  - { name: lightning-v3.1, type: tts, account: smallest-tts, aliases: [lightning_v3.1], price: { per_1k_chars: "1" } }
  - { name: lightning-v3.1, type: tts, account: smallest-tts-2, aliases: [lightning_v3.1], price: { per_1k_chars: "2" } }
  - { name: pulse, type: stt, account: smallest-tts, price: { per_minute: "1" } }
  - { name: pulse, type: stt, account: smallest-tts-2, price: { per_minute: "2" } }
`;
  const snapshot = await loadSnapshotFromText(yaml, { origin: 'test:model-accounts', baseDir: EXAMPLES_DIR });
  const source = new StaticSnapshotSource(snapshot);
  const ledger = createAdmissionLedger();
  const spans: UsageSpan[] = [];
  const sink = { publish: (s: UsageSpan) => void spans.push(s), flush: async () => {}, close: async () => {} };
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), limits: ledger, observe: createUsageObserverFactory({ sink }) });
  return {
    edge, sim, snapshot, ledger, spans, keys,
    async close() {
      await edge.close();
      await sim.close();
    },
  };
}

const TEXT = 'Hello from two accounts'; // 23 characters

async function speak(r: Rig, delayMs = 0, path = '/smallest/waves/v1/lightning-v3.1/get_speech'): Promise<Response> {
  const token = await signDevToken(r.snapshot, { user: 'sam', teams: ['studio'] });
  return fetch(`${r.edge.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(delayMs > 0 ? { 'x-sim-delay-ms': String(delayMs) } : {}) },
    body: JSON.stringify({ text: TEXT, voice_id: 'magnus' }),
  });
}

/** Uploads 1 s of 16 kHz linear16 audio to Pulse, streamed to the provider as it arrives (not read for the decision). */
async function transcribe(r: Rig, headers: Record<string, string> = {}): Promise<Response> {
  const token = await signDevToken(r.snapshot, { user: 'sam', teams: ['studio'] });
  return fetch(`${r.edge.url}/smallest/waves/v1/pulse/get_text?language=en&sample_rate=16000`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', ...headers },
    body: new Uint8Array(32_000),
  });
}

/** Provider keys the simulator saw on TTS requests, in arrival order. */
const keysSeen = (r: Rig): string[] =>
  r.sim.requests().filter((q) => q.url.includes('/get_speech')).map((q) => String(q.headers.authorization ?? '').replace(/^Bearer /, ''));

const unitsInUse = (r: Rig): number => r.ledger.inUse('account', 'smallest-tts', 'tts_units') + r.ledger.inUse('account', 'smallest-tts-2', 'tts_units');


describe('one model, two accounts of one unit each', () => {
  it('serves two concurrent syntheses, one per account, each key seen once, and the spans name and bill each account', async () => {
    rig = await start({ one: 1, two: 1 });
    const r = rig;
    const [a, b] = await Promise.all([speak(r, 300), speak(r, 300)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    await Promise.all([a.arrayBuffer(), b.arrayBuffer()]);
    expect(keysSeen(r).sort()).toEqual([r.keys.one, r.keys.two].sort());
    expect(r.sim.unitUsage().map((u) => u.refusals)).toEqual([0, 0]);
    await until(() => r.spans.length === 2 && unitsInUse(r) === 0, 2000, 'both spans and releases');
    const byAccount = Object.fromEntries(r.spans.map((s) => [s.account, s.costUsd]));
    // 23 characters at $1 and $2 per 1,000.
    expect(byAccount).toEqual({ 'smallest-tts': '0.023', 'smallest-tts-2': '0.046' });
    // A third at once finds both accounts full: the edge's own 429, nothing sent upstream.
    const held = [speak(r, 300), speak(r, 300)];
    await until(() => unitsInUse(r) === 2, 2000, 'two units held');
    const third = await speak(r);
    expect(third.status).toBe(429);
    expect(await third.json()).toMatchObject({ error: { code: 'account_limit_exceeded', scope: 'account' } });
    await Promise.all((await Promise.all(held)).map((x) => x.arrayBuffer()));
    expect(r.sim.unitUsage().map((u) => u.refusals)).toEqual([0, 0]);
  });

  it('a provider 429 before the first byte is retried once on the other account: the client gets 200, the span names it, every unit is released', async () => {
    // The config believes smallest-tts has 3 units; the provider sells it 1. The first synthesis
    // holds that unit, the second is admitted on smallest-tts too (2 spare against 1), gets the
    // provider's 429 and moves to smallest-tts-2.
    rig = await start({ one: 3, two: 1 });
    const r = rig;
    const first = speak(r, 400);
    await until(() => r.sim.unitUsage().some((u) => u.peakTts === 1), 2000, 'the first synthesis upstream');
    const second = await speak(r);
    expect(second.status).toBe(200);
    expect((await second.arrayBuffer()).byteLength).toBeGreaterThan(0);
    expect((await first).status).toBe(200);
    await (await first).arrayBuffer();
    expect(keysSeen(r)).toEqual([r.keys.one, r.keys.one, r.keys.two]);
    const usage = Object.fromEntries(r.sim.unitUsage().map((u) => [u.keyLast4, u.refusals]));
    expect(usage).toEqual({ [r.keys.one.slice(-4)]: 1, [r.keys.two.slice(-4)]: 0 });
    await until(() => r.spans.length === 2 && unitsInUse(r) === 0, 2000, 'spans and releases');
    const retried = r.spans.find((s) => s.account === 'smallest-tts-2');
    expect(retried).toMatchObject({ status: 200, costUsd: '0.046', characters: 23 });
    expect(r.spans.map((s) => s.account).sort()).toEqual(['smallest-tts', 'smallest-tts-2']);
    expect(r.ledger.inUse('team', 'studio', 'units')).toBe(0);
    // smallest-tts cools for about a second: the next request goes to smallest-tts-2 though smallest-tts has more spare units.
    const next = await speak(r);
    expect(next.status).toBe(200);
    await next.arrayBuffer();
    expect(keysSeen(r).at(-1)).toBe(r.keys.two);
  });

  it('the same retry on an SSE stream: the client reads the other account\'s events, never the refusal', async () => {
    rig = await start({ one: 3, two: 1 });
    const r = rig;
    const first = speak(r, 400);
    await until(() => r.sim.unitUsage().some((u) => u.peakTts === 1), 2000, 'the first synthesis upstream');
    const sse = await speak(r, 0, '/smallest/waves/v1/lightning-v3.1/stream');
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await sse.text()).toContain('data:');
    await (await first).arrayBuffer();
    const streamed = r.sim.requests().filter((q) => q.url.includes('/stream')).map((q) => String(q.headers.authorization).replace(/^Bearer /, ''));
    expect(streamed).toEqual([r.keys.one, r.keys.two]);
    await until(() => r.spans.length === 2 && unitsInUse(r) === 0, 2000, 'spans and releases');
    expect(r.spans.find((s) => s.routeKind === 'sse')).toMatchObject({ account: 'smallest-tts-2', status: 200 });
  });

  it('an STT upload that gets a provider 429 is not retried: its bytes are gone upstream, so the client gets the 429 and the other account sees nothing', async () => {
    rig = await start({ one: 1, two: 1 });
    const r = rig;
    // The simulator answers this one request 429, as Pulse does over its units.
    const refused = await transcribe(r, { 'x-sim-status': '429' });
    expect(refused.status).toBe(429);
    expect(await refused.json()).toEqual({ error: 'Rate limit exceeded. Please try again later.' });
    const uploads = r.sim.requests().filter((q) => q.url.includes('/pulse/get_text'));
    expect(uploads).toHaveLength(1);
    const sentWith = String(uploads[0]!.headers.authorization).replace(/^Bearer /, '');
    expect([r.keys.one, r.keys.two]).toContain(sentWith);
    await until(() => r.spans.length === 1 && unitsInUse(r) === 0, 2000, 'span and release');
    // The span names the account whose key the one upload carried.
    const account = sentWith === r.keys.one ? 'smallest-tts' : 'smallest-tts-2';
    expect(r.spans[0]).toMatchObject({ status: 429, account, model: 'pulse' });
    expect(r.ledger.inUse('account', 'smallest-tts', 'stt_units') + r.ledger.inUse('account', 'smallest-tts-2', 'stt_units')).toBe(0);
    // The refusal took nothing with it: the next upload is served.
    const next = await transcribe(r);
    expect(next.status, await next.clone().text()).toBe(200);
  });

  it("the edge's own 429 and its span name the same account, also when the refused one is not the decision's first", async () => {
    rig = await start({ one: 1, two: 1 });
    const r = rig;
    // smallest-tts serves a first synthesis and finishes: it is now the more recently chosen account.
    const warm = await speak(r);
    await warm.arrayBuffer();
    // So the next goes to smallest-tts-2, the one after to smallest-tts; both are then full, and the
    // least recently chosen of them, smallest-tts-2, is the one tried (and refused) first.
    const holdTwo = speak(r, 400);
    await until(() => r.ledger.inUse('account', 'smallest-tts-2', 'tts_units') === 1, 2000, 'smallest-tts-2 held');
    const holdOne = speak(r, 400);
    await until(() => unitsInUse(r) === 2, 2000, 'both held');
    const refused = await speak(r);
    expect(refused.status).toBe(429);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('account_limit_exceeded');
    const named = /account "([^"]+)"/.exec(body.error.message)?.[1];
    expect(named).toBe('smallest-tts-2');
    await until(() => r.spans.some((s) => s.error === 'account_limit_exceeded'), 2000, 'the refused span');
    expect(r.spans.find((s) => s.error === 'account_limit_exceeded')).toMatchObject({ status: 429, account: named });
    await Promise.all((await Promise.all([holdOne, holdTwo])).map((x) => x.arrayBuffer()));
  });

  it('with no other account to move to, the provider 429 reaches the client unchanged and the unit is released', async () => {
    rig = await start({ one: 2, two: 1 });
    const r = rig;
    // smallest-tts-2 is busy (its one unit held), smallest-tts is held upstream by a long synthesis.
    const holdOne = speak(r, 400); // smallest-tts: 2 spare against 1
    const holdTwo = speak(r, 400); // tie at 1: smallest-tts-2, never chosen
    await until(() => unitsInUse(r) === 2 && r.sim.unitUsage().every((u) => u.peakTts === 1), 2000, 'both keys busy upstream');
    const refused = await speak(r); // smallest-tts has 1 spare in the config: the provider refuses
    expect(refused.status).toBe(429);
    const body = await refused.text();
    expect(body).not.toContain('account_limit_exceeded'); // the provider's own answer, not the gateway's
    await Promise.all((await Promise.all([holdOne, holdTwo])).map((x) => x.arrayBuffer()));
    await until(() => unitsInUse(r) === 0, 2000, 'releases');
    expect(keysSeen(r).filter((k) => k === r.keys.one)).toHaveLength(2);
  });
});
