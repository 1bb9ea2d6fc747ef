/**
 * Case 2 — REST throughput at 64 connections (autocannon, in this process, on the load core) for
 * every path — direct, both edges and the peers, all on the stub upstream — with p99 at that load.
 * Besides requests/s of the whole pinned core (which the upstream shares with the gateway), each
 * gateway path reports requests per CPU-second of its own processes, read from /proc the same way
 * for the edge, extproc and every peer (nginx: master and worker) — the gateway's cost per core,
 * independent of the co-located upstream.
 */
import autocannon from 'autocannon';
import { compareWithPeers } from '../compare.ts';
import { cpuOf, restRequest, sharedTopology, VOICEGATE_PATHS, type BenchSettings, type Target } from '../harness.ts';
import { REST_TOPOLOGY } from './rest-latency.ts';
import type { CaseResult, Row } from '../report.ts';
import { ratio, spread } from '../stats.ts';

const CASE = '2 REST throughput, 64 conns';
const CONNECTIONS = 64;

interface RoundFigures {
  readonly rps: number;
  readonly p99Ms: number;
  /** Requests per CPU-second of the gateway's own processes (NaN for direct). */
  readonly perGatewayCpuSecond: number;
  /** Requests per CPU-second of every server process (simulator included). */
  readonly perSutCpuSecond: number;
  readonly failed: number;
}

async function load(t: Target, seconds: number, sut: () => number): Promise<RoundFigures> {
  const gw0 = cpuOf(t.gateway);
  const sut0 = sut();
  const req = restRequest(t);
  const r = await autocannon({
    url: req.url.href,
    method: 'POST',
    headers: req.headers,
    body: req.body,
    connections: CONNECTIONS,
    duration: seconds,
  });
  const gwCpu = cpuOf(t.gateway) - gw0;
  const sutCpu = sut() - sut0;
  const ok = r['2xx'];
  return {
    rps: ok / r.duration,
    p99Ms: r.latency.p99,
    perGatewayCpuSecond: t.gateway.length ? ok / gwCpu : Number.NaN,
    perSutCpuSecond: ok / sutCpu,
    failed: r.non2xx + r.errors + r.timeouts,
  };
}

export async function restThroughput(s: BenchSettings): Promise<CaseResult> {
  // Quick: 2 s rounds keep six paths inside the quick run's budget.
  const seconds = s.quick ? 2 : 8;
  const rounds = s.quick ? Math.min(s.rounds, 2) : s.rounds;
  const topo = await sharedTopology(s, REST_TOPOLOGY);
  const everyServer = [topo.upstream, ...new Set(topo.targets.flatMap((t) => t.gateway))];
  const sut = () => cpuOf(everyServer);
  for (const t of topo.targets) await load(t, s.quick ? 0.5 : 2, sut);
  const per: Record<string, RoundFigures[]> = {};
  for (let r = 0; r < rounds; r++) {
    const order = topo.targets.map((_, i) => topo.targets[(i + r) % topo.targets.length]!);
    for (const t of order) (per[t.name] ??= []).push(await load(t, seconds, sut));
    s.log(`  round ${r + 1}/${rounds}: ${order.map((t) => `${t.name} ${per[t.name]!.at(-1)!.rps.toFixed(0)} req/s`).join(', ')}`);
  }
  const direct = per['direct']!;
  const baseRps = spread(direct.map((x) => x.rps)).median;
  const baseP99 = spread(direct.map((x) => x.p99Ms)).median;
  const rows: Row[] = [];
  for (const t of topo.targets) {
    const f = per[t.name]!;
    const isBase = t.name === 'direct';
    rows.push({ case: CASE, metric: 'req/s, whole SUT core', path: t.name, unit: 'req/s', value: spread(f.map((x) => x.rps)), ...(isBase ? {} : { baseline: baseRps }) });
  }
  const perCpu = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, v.map((x) => x.perGatewayCpuSecond)]));
  // nginx first: the C floor is the figure the issue divides by; then the Node floor, then Portkey.
  const vs = compareWithPeers(perCpu, { subjects: VOICEGATE_PATHS, peers: ['nginx', 'node floor', 'portkey'], of: 'value' });
  for (const t of topo.targets) {
    if (t.name === 'direct') continue;
    rows.push({
      case: CASE,
      metric: 'req per gateway CPU-second',
      path: t.name,
      unit: 'req/s',
      value: spread(perCpu[t.name]!),
      ...(vs[t.name] ? { vs: vs[t.name] } : {}),
      ...(t.name === 'edge in-proc'
        ? {
            goals: [
              { cmp: 'ge', value: 10_000, of: 'value', text: '≥ 10,000 req/s per core' },
              { cmp: 'ge', value: 0.9, of: 'peer', peer: 'node floor', text: '≥ 0.9 × node floor' },
            ] as const,
          }
        : {}),
    });
  }
  for (const t of topo.targets) {
    const f = per[t.name]!;
    rows.push({ case: CASE, metric: 'p99 at 64 conns', path: t.name, unit: 'ms', value: spread(f.map((x) => x.p99Ms)), ...(t.name === 'direct' ? {} : { baseline: baseP99 }) });
  }
  const failed = Object.values(per).flat().reduce((n, x) => n + x.failed, 0);
  const sim = spread(direct.map((x) => x.perSutCpuSecond)).median;
  return {
    id: 2,
    title: 'REST throughput',
    rows,
    notes: [
      `autocannon, ${CONNECTIONS} connections, ${seconds} s per round, ${rounds} rounds after a warm-up per path; same requests and stub upstream as case 1. autocannon's latency resolution is 1 ms.`,
      `"whole SUT core": the stub upstream shares the pinned core with the gateway, so the gateway rows are bounded by both; the stub alone serves ${Math.round(sim).toLocaleString('en-US')} req per CPU-second. "gateway CPU-second": successful requests ÷ (utime+stime) of the gateway's processes during the round — the edge (and extproc on the gRPC path), the Node floor, nginx's master and worker, Portkey — the goals are judged on this, and "vs peers" divides the edge's figure by each peer's, round by round (above 1: cheaper per request than the peer).`,
      ...topo.skipped.map((x) => `Peer skipped: ${x}.`),
      failed ? `${failed} requests failed (non-2xx, errors or timeouts) across all rounds.` : 'No failed requests.',
      `ratios: ${topo.targets.filter((t) => t.name !== 'direct').map((t) => `${t.name} ${ratio(spread(per[t.name]!.map((x) => x.rps)).median, baseRps).toFixed(2)}× direct`).join(', ')}.`,
    ],
    raw: per,
  };
}
