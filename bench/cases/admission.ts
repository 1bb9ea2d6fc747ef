/**
 * Case 7 — what limits add to admission (issue 12), in the same run, each limited path against the
 * same path without limits:
 *
 * 1. **Edge REST at 1 in flight** — two edge children deciding in process in front of the stub
 *    upstream: one with limits as a cluster pod runs them (`--limits cluster`: account units leased
 *    from the grant ledger on NATS KV, a local grant; team `voice` capped at max_units and
 *    max_sessions; the limit metrics), one whose ledger admits everything (`--limits none`).
 * 2. **Check over gRPC** — one extproc child with cluster limits, two clients: one asking Check to
 *    admit (as Envoy's Check does) and one saying it admits itself (the edge's header), so Check
 *    takes no units: the same process and path without the admission. At 1 in flight (p50/p99) and
 *    at 32 in flight (calls per extproc CPU-second, p99).
 * 3. **Ledger round trips** — an admission that finds the local grant used up is refused (429) and
 *    starts a borrow: the share of such admissions over the measured rounds, and the CAS writes
 *    the grant buckets took meanwhile (the stream sequence of each bucket; heartbeats included).
 * 4. **In process** (no sockets): `decideCheck` with and without the ledger, and the edge's
 *    `admitDecision` + release alone — the admission's own cost without transport noise.
 *
 * Without a reachable NATS the limited children run `--limits pod` (whole account, no ledger) and
 * the notes say so. Alone: `npm run bench -- --only 7 [--quick]`.
 */
import { connect, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import type { Allow } from '../../extproc/core/decision/types.ts';
import { admitDecision } from '../../extproc/core/limits/admission.ts';
import { createAdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { SlotTable } from '../../extproc/core/limits/slots.ts';
import { decideCheck, type AuthorizationServiceDeps } from '../../extproc/adapters/envoy/authorization-service.ts';
import { createGrpcAuthorizer, toCheckRequest } from '../../extproc/adapters/envoy/authz-client.ts';
import { fromCheckRequest, type CheckRequestParse } from '../../extproc/adapters/envoy/check-request.ts';
import { keepAliveAgent, post, SMALL_TTS_BODY, TTS_SYNC_PATH, usSince } from '../clients.ts';
import { benchSnapshot } from '../config.ts';
import { gatewayToken, type BenchSettings } from '../harness.ts';
import { startServer, type ServerChild } from '../processes.ts';
import type { CaseResult, Goal, Row } from '../report.ts';
import { againstBaseline, percentileSorted, ratio, sortedCopy, spread, summarizeLatencies } from '../stats.ts';
import { checkInput } from './check-throughput.ts';

const CASE = '7 admission';
const CONCURRENCY = 32;
/** Team `voice`'s max_units and max_sessions: far above what is ever in flight, so every admission checks it and none is refused by it. */
const TEAM_CAP = 1_000;
const ADDED_P99: Goal = { cmp: 'le', value: 50, of: 'added', text: 'added p99 < 50 µs' };

type Client = ReturnType<typeof createGrpcAuthorizer>;

interface Counts {
  /** Answers allowed / 200. */
  ok: number;
  /** Refused by a limit (429): the grant was short and a borrow started. */
  refused: number;
}

const none = (): Counts => ({ ok: 0, refused: 0 });

/** `n` REST requests back to back on one keep-alive connection; a 429 is counted, not timed. */
async function restSamples(origin: string, token: string, n: number, counts: Counts): Promise<number[]> {
  const agent = keepAliveAgent();
  const url = new URL(`${origin}/smallest${TTS_SYNC_PATH}`);
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      const r = await post(agent, url, headers, SMALL_TTS_BODY);
      const us = usSince(start);
      if (r.status === 429) {
        counts.refused++;
        continue;
      }
      if (r.status !== 200) throw new Error(`${origin}: status ${r.status}`);
      counts.ok++;
      out.push(us);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

function tally(counts: Counts, d: Awaited<ReturnType<Client['check']>>): boolean {
  if (d.kind === 'allow') {
    counts.ok++;
    return true;
  }
  if (d.status === 429) {
    counts.refused++;
    return false;
  }
  throw new Error(`bench Check was denied: ${d.code}`);
}

/** `n` Checks one at a time, each timed (allowed ones only). */
async function checkSequential(client: Client, token: string, n: number, counts: Counts): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const d = await client.check(checkInput(token, i));
    const us = usSince(t);
    if (tally(counts, d)) out.push(us);
  }
  return out;
}

/** `calls` Checks with {@link CONCURRENCY} in flight: calls per extproc CPU-second and p99. */
async function checkLoop(client: Client, token: string, calls: number, extproc: ServerChild, counts: Counts): Promise<{ perCpuSecond: number; p99: number }> {
  const lat: number[] = [];
  let next = 0;
  const cpu0 = extproc.cpuSeconds();
  const worker = async () => {
    for (let i = next++; i < calls; i = next++) {
      const t = process.hrtime.bigint();
      const d = await client.check(checkInput(token, i));
      const us = usSince(t);
      if (tally(counts, d)) lat.push(us);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const cpu = extproc.cpuSeconds() - cpu0;
  return { perCpuSecond: calls / cpu, p99: summarizeLatencies(lat).p99 };
}

// ---- in process (no sockets) ----

const us = (start: bigint) => Number(process.hrtime.bigint() - start) / 1000;
const pct = (samples: number[], q: number): number => percentileSorted(sortedCopy(samples), q);

async function decideSamples(parsed: CheckRequestParse, deps: AuthorizationServiceDeps, slots: SlotTable | undefined, n: number): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const a = await decideCheck(parsed, deps);
    // The ext_proc stream's end, as ext-proc-service.ts does it.
    if (slots && a.extra?.slot !== undefined) slots.release(a.extra.slot, 'stream');
    out[i] = us(t);
    if (a.decision.kind !== 'allow') throw new Error(`bench Check was denied: ${a.decision.code}`);
  }
  return out;
}

function edgeAdmissionSamples(ledger: ReturnType<typeof createAdmissionLedger>, allow: Allow, snapshot: Snapshot, n: number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const a = admitDecision(ledger, allow, snapshot);
    if (a.kind !== 'granted') throw new Error('bench admission was refused');
    a.lease.release();
    out[i] = us(t);
  }
  return out;
}

interface InProcess {
  plainP50: number[];
  plainP99: number[];
  limitedP50: number[];
  limitedP99: number[];
  edgeP50: number[];
  edgeP99: number[];
}

export async function inProcess(s: Pick<BenchSettings, 'rounds'>, perRound: number, token: string): Promise<InProcess> {
  const snapshot = await benchSnapshot('http://127.0.0.1:1', { teamCap: TEAM_CAP });
  const source = new StaticSnapshotSource(snapshot);
  const body = new TextEncoder().encode(SMALL_TTS_BODY);
  const path = `/smallest${TTS_SYNC_PATH}`;
  const parsed = fromCheckRequest(
    toCheckRequest({
      method: 'POST',
      path,
      headers: { ':method': 'POST', ':path': path, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
      requestId: 'bench',
    }),
  );
  const plain: AuthorizationServiceDeps = { authorizer: createAuthorizer(source), logger: pino({ level: 'silent' }), snapshot: () => source.current() };
  const ledger = createAdmissionLedger();
  const slots = new SlotTable();
  const limited: AuthorizationServiceDeps = { ...plain, limits: { ledger, slots } };
  const first = await decideCheck(parsed, plain);
  if (first.decision.kind !== 'allow') throw new Error(`bench Check was denied: ${first.decision.code}`);
  const allow = first.decision;
  // Warm-up: JIT and the verification cache on every path.
  await decideSamples(parsed, plain, undefined, perRound);
  await decideSamples(parsed, limited, slots, perRound);
  edgeAdmissionSamples(ledger, allow, snapshot, perRound);
  const f: InProcess = { plainP50: [], plainP99: [], limitedP50: [], limitedP99: [], edgeP50: [], edgeP99: [] };
  for (let r = 0; r < s.rounds; r++) {
    // Alternate which path goes first, so drift within a round does not favour one.
    const a = r % 2 === 0 ? await decideSamples(parsed, plain, undefined, perRound) : undefined;
    const b = await decideSamples(parsed, limited, slots, perRound);
    const c = a ?? (await decideSamples(parsed, plain, undefined, perRound));
    const e = edgeAdmissionSamples(ledger, allow, snapshot, perRound);
    f.plainP50.push(pct(c, 50));
    f.plainP99.push(pct(c, 99));
    f.limitedP50.push(pct(b, 50));
    f.limitedP99.push(pct(b, 99));
    f.edgeP50.push(pct(e, 50));
    f.edgeP99.push(pct(e, 99));
  }
  if (slots.held !== 0 || ledger.inUse('account', allow.metadata.account ?? '', 'tts_units') !== 0) throw new Error('units left held after the bench');
  return f;
}

// ---- the grant ledger's buckets ----

async function natsOrWhy(url: string): Promise<NatsConnection | string> {
  try {
    return await connect({ servers: url, timeout: 2_000, maxReconnectAttempts: 0, name: 'voicegate-bench' });
  } catch (err) {
    return (err as Error).message;
  }
}

/** CAS writes a grant bucket has taken so far: its stream's last sequence (every put or update is one message). */
async function bucketWrites(nc: NatsConnection | undefined, bucket: string): Promise<number> {
  if (!nc) return 0;
  const info = await (await nc.jetstreamManager()).streams.info(`KV_${bucket}`);
  return info.state.last_seq;
}

export async function admissionCost(s: BenchSettings): Promise<CaseResult> {
  const n = s.quick
    ? { restWarm: 300, rest: 500, seqWarm: 300, seq: 1_000, loopWarm: 1_000, loop: 2_000, inProc: 5_000 }
    : { restWarm: 1_000, rest: 2_000, seqWarm: 1_000, seq: 4_000, loopWarm: 5_000, loop: 20_000, inProc: 40_000 };
  const natsUrl = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
  const nats = await natsOrWhy(natsUrl);
  const nc = typeof nats === 'string' ? undefined : nats;
  const tag = `${process.pid}_${Date.now().toString(36)}`;
  const buckets = { edge: `vg_bench_grants_edge_${tag}`, extproc: `vg_bench_grants_extproc_${tag}` };
  const limitedArgs = (bucket: string): string[] =>
    nc ? ['--limits', 'cluster', '--nats', natsUrl, '--bucket', bucket, '--team-cap', String(TEAM_CAP)] : ['--limits', 'pod', '--team-cap', String(TEAM_CAP)];
  if (!nc) s.log(`  NATS at ${natsUrl} not reachable (${String(nats)}): limits in pod mode, no grant ledger`);

  const opts = { ...(s.cpu.pinned ? { cpu: s.cpu.sutCpu } : {}), nodeFlags: s.edgeNodeFlags };
  const children: ServerChild[] = [];
  const track = async (p: Promise<ServerChild>): Promise<ServerChild> => {
    const c = await p;
    children.push(c);
    return c;
  };
  const clients: Client[] = [];
  try {
    const t0 = Date.now();
    const stub = await track(startServer('stub', ['--body', 'json'], opts));
    const upstream = `http://127.0.0.1:${stub.port}`;
    const started = await Promise.allSettled([
      track(startServer('edge', ['--upstream', upstream, '--authz', 'inproc', '--limits', 'none'], opts)),
      track(startServer('edge', ['--upstream', upstream, '--authz', 'inproc', ...limitedArgs(buckets.edge)], opts)),
      track(startServer('extproc', ['--upstream', upstream, ...limitedArgs(buckets.extproc)], opts)),
      gatewayToken(),
    ]);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const [plainEdge, limitedEdge, extproc, token] = started.map((r) => (r as PromiseFulfilledResult<ServerChild | string>).value) as [ServerChild, ServerChild, ServerChild, string];
    s.log(`  ${children.length} servers started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const plainOrigin = `http://127.0.0.1:${plainEdge.port}`;
    const limitedOrigin = `http://127.0.0.1:${limitedEdge.port}`;

    // 1. Edge REST at 1 in flight.
    const scratch = none();
    await restSamples(plainOrigin, token, n.restWarm, scratch);
    await restSamples(limitedOrigin, token, n.restWarm, scratch);
    const rest = { plainP50: [] as number[], plainP99: [] as number[], limitedP50: [] as number[], limitedP99: [] as number[], share: [] as number[] };
    const restCounts = none();
    const restWrites0 = await bucketWrites(nc, buckets.edge);
    for (let r = 0; r < s.rounds; r++) {
      const c = none();
      const run = async (origin: string) => summarizeLatencies(await restSamples(origin, token, n.rest, origin === limitedOrigin ? c : scratch));
      const [a, b] = r % 2 === 0 ? [await run(plainOrigin), await run(limitedOrigin)] : [undefined, await run(limitedOrigin)];
      const plain = a ?? (await run(plainOrigin));
      rest.plainP50.push(plain.p50);
      rest.plainP99.push(plain.p99);
      rest.limitedP50.push(b!.p50);
      rest.limitedP99.push(b!.p99);
      rest.share.push((100 * c.refused) / (c.ok + c.refused));
      restCounts.ok += c.ok;
      restCounts.refused += c.refused;
      s.log(`  REST round ${r + 1}/${s.rounds}: p99 ${plain.p99.toFixed(0)} µs without limits, ${b!.p99.toFixed(0)} µs with; ${c.refused} refused`);
    }
    const restWrites = (await bucketWrites(nc, buckets.edge)) - restWrites0;

    // 2. Check over gRPC: one process, the admission asked for or not.
    const target = `127.0.0.1:${extproc.port}`;
    const plainClient = createGrpcAuthorizer(target, { admitsItself: true, timeoutMs: 30_000 });
    clients.push(plainClient);
    const limitedClient = createGrpcAuthorizer(target, { admitsItself: false, timeoutMs: 30_000 });
    clients.push(limitedClient);
    await checkSequential(plainClient, token, n.seqWarm, scratch);
    await checkSequential(limitedClient, token, n.seqWarm, scratch);
    await checkLoop(plainClient, token, n.loopWarm, extproc, scratch);
    await checkLoop(limitedClient, token, n.loopWarm, extproc, scratch);
    const check = {
      plainP50: [] as number[], plainP99: [] as number[], limitedP50: [] as number[], limitedP99: [] as number[],
      plainCpu: [] as number[], limitedCpu: [] as number[], plainLoopP99: [] as number[], limitedLoopP99: [] as number[],
      share: [] as number[],
    };
    const seqCounts = none();
    const loopCounts = none();
    const checkWrites0 = await bucketWrites(nc, buckets.extproc);
    for (let r = 0; r < s.rounds; r++) {
      const cs = none();
      const cl = none();
      const seq = async (limited: boolean) => summarizeLatencies(await checkSequential(limited ? limitedClient : plainClient, token, n.seq, limited ? cs : scratch));
      const loop = (limited: boolean) => checkLoop(limited ? limitedClient : plainClient, token, n.loop, extproc, limited ? cl : scratch);
      const first = r % 2 === 0 ? { seq: await seq(false), loop: await loop(false) } : undefined;
      const limitedSeq = await seq(true);
      const limitedLoop = await loop(true);
      const plain = first ?? { seq: await seq(false), loop: await loop(false) };
      check.plainP50.push(plain.seq.p50);
      check.plainP99.push(plain.seq.p99);
      check.limitedP50.push(limitedSeq.p50);
      check.limitedP99.push(limitedSeq.p99);
      check.plainCpu.push(plain.loop.perCpuSecond);
      check.limitedCpu.push(limitedLoop.perCpuSecond);
      check.plainLoopP99.push(plain.loop.p99);
      check.limitedLoopP99.push(limitedLoop.p99);
      check.share.push((100 * (cs.refused + cl.refused)) / (cs.ok + cs.refused + cl.ok + cl.refused));
      for (const [all, c] of [[seqCounts, cs], [loopCounts, cl]] as const) {
        all.ok += c.ok;
        all.refused += c.refused;
      }
      s.log(`  Check round ${r + 1}/${s.rounds}: p99 ${plain.seq.p99.toFixed(0)} / ${limitedSeq.p99.toFixed(0)} µs (1 in flight), ${plain.loop.perCpuSecond.toFixed(0)} / ${limitedLoop.perCpuSecond.toFixed(0)} per CPU-s (${CONCURRENCY} in flight); ${cs.refused + cl.refused} refused`);
    }
    const checkWrites = (await bucketWrites(nc, buckets.extproc)) - checkWrites0;

    // 4. In process.
    const inProc = await inProcess(s, n.inProc, token);

    const rows: Row[] = [];
    const pair = (metric: string, unit: string, paths: readonly [string, string], plain: number[], limited: number[], goals?: readonly Goal[]) => {
      rows.push({ case: CASE, metric, path: paths[0], unit, value: spread(plain) });
      rows.push({ case: CASE, metric, path: paths[1], unit, value: spread(limited), ...againstBaseline(limited, plain, false), ...(goals ? { goals } : {}) });
    };
    const mode = nc ? 'cluster' : 'pod';
    const edgePaths = ['edge, no limits', `edge, ${mode} limits`] as const;
    const checkPaths = ['Check, no admission', `Check admits (${mode})`] as const;
    pair('REST p50, 1 in flight', 'µs', edgePaths, rest.plainP50, rest.limitedP50);
    pair('REST p99, 1 in flight', 'µs', edgePaths, rest.plainP99, rest.limitedP99, [ADDED_P99]);
    pair('gRPC Check p50, 1 in flight', 'µs', checkPaths, check.plainP50, check.limitedP50);
    pair('gRPC Check p99, 1 in flight', 'µs', checkPaths, check.plainP99, check.limitedP99, [ADDED_P99]);
    rows.push({ case: CASE, metric: `Check per extproc CPU-second, ${CONCURRENCY} in flight`, path: checkPaths[0], unit: '/s', value: spread(check.plainCpu) });
    rows.push({ case: CASE, metric: `Check per extproc CPU-second, ${CONCURRENCY} in flight`, path: checkPaths[1], unit: '/s', value: spread(check.limitedCpu), baseline: spread(check.plainCpu).median });
    pair(`gRPC Check p99, ${CONCURRENCY} in flight`, 'µs', checkPaths, check.plainLoopP99, check.limitedLoopP99);
    rows.push({ case: CASE, metric: 'admissions needing a ledger round trip', path: `edge REST (${mode})`, unit: '%', value: spread(rest.share) });
    rows.push({ case: CASE, metric: 'admissions needing a ledger round trip', path: `Check (${mode})`, unit: '%', value: spread(check.share) });
    pair('in-process decideCheck p99', 'µs', ['no limits', 'acquire + slot + release (pod)'], inProc.plainP99, inProc.limitedP99, [ADDED_P99]);
    rows.push({ case: CASE, metric: 'in-process edge admission p99', path: 'acquire + release (pod)', unit: 'µs', value: spread(inProc.edgeP99), goals: [{ cmp: 'le', value: 50, of: 'value', text: '< 50 µs' }] });

    const per1000 = (writes: number, admissions: number) => (admissions ? ((1000 * writes) / admissions).toFixed(2) : '–');
    const checkAdmissions = seqCounts.ok + seqCounts.refused + loopCounts.ok + loopCounts.refused;
    const notes = [
      nc
        ? `Limited paths run as cluster pods (\`--limits cluster\`, grant ledger on NATS KV at ${natsUrl}, one bucket per child, deleted afterwards; default grant policy: in use + 1 headroom, settled every second) with team \`voice\` capped at max_units/max_sessions ${TEAM_CAP} (never reached) and the limit metrics wrapped round the ledger, as \`voicegate edge|extproc\` run them. "No limits": the edge's ledger admits everything (a bench-only ledger: the product has no switch), and Check is told the caller admits itself (the edge's gRPC header), in the same extproc process.`
        : `NATS at ${natsUrl} was not reachable (${String(nats)}): the limited paths ran \`--limits pod\` (the whole account, no grant ledger), so no ledger round trip was possible.`,
      `Edge: ${n.rest} sequential POSTs per path per round on one keep-alive connection after ${n.restWarm} warm-up each, paths alternating first; "added" is the round's limited p minus unlimited p. Check: the case-3 CheckRequest from the edge's grpc-js client, ${n.seq} one at a time and ${n.loop} with ${CONCURRENCY} in flight per path per round; under limits each slot is released as soon as its Check is done, before the next call is read (a zero-length request; the release is the one the ext_proc stream end makes).`,
      `Ledger round trips: an admission the local grant cannot cover is answered 429 and starts a borrow (it never waits for NATS). Measured rounds: edge ${restCounts.refused} of ${restCounts.ok + restCounts.refused} admissions refused; Check ${seqCounts.refused + loopCounts.refused} of ${checkAdmissions}. CAS writes to the grant buckets meanwhile (heartbeats renewing 6 pools each second, borrows, returns; all off the request path): edge ${restWrites} (${per1000(restWrites, restCounts.ok + restCounts.refused)} per 1,000 admissions), extproc ${checkWrites} (${per1000(checkWrites, checkAdmissions)} per 1,000).`,
      `In process: decideCheck (token cached) with and without a pod ledger and slot table, and admitDecision + release alone, ${n.inProc.toLocaleString('en-US')} calls per path per round, one at a time. CPU-second ratio with/without: ${ratio(spread(check.limitedCpu).median, spread(check.plainCpu).median).toFixed(2)}.`,
    ];
    return {
      id: 7,
      title: 'Admission with limits',
      rows,
      notes,
      raw: { mode, rest, check, inProcess: inProc, counts: { rest: restCounts, checkSequential: seqCounts, checkLoop: loopCounts }, casWrites: { edge: restWrites, extproc: checkWrites } },
    };
  } finally {
    for (const c of clients) c.close();
    // Children first: each gives its grants back on the way out, then the buckets go.
    await Promise.all(children.map((c) => c.stop()));
    if (nc) {
      const jsm = await nc.jetstreamManager().catch(() => undefined);
      for (const b of Object.values(buckets)) await jsm?.streams.delete(`KV_${b}`).catch(() => undefined);
      await nc.close();
    }
  }
}

// Alone, the in-process part only: `node bin/run-ts.js bench/cases/admission.ts [--quick]`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const f = await inProcess({ rounds: quick ? 3 : 5 }, quick ? 5_000 : 40_000, await gatewayToken());
  for (const [k, v] of Object.entries(f)) console.log(`${k.padEnd(12)} ${(v as number[]).map((x) => x.toFixed(2)).join('  ')} µs`);
}
