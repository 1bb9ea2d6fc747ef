/**
 * Case 1 — REST added latency at one request in flight: a small POST sent back-to-back on one
 * keep-alive connection, timed with hrtime (µs), directly to the upstream, through the edge
 * deciding in process, through the edge asking `voicegate extproc` over gRPC, and through the
 * peers (the Node floor, nginx, Portkey). The upstream is the stub (one ~2 KB JSON answer for every
 * path), the one upstream every peer can relay. Paths take turns inside every round, so drift hits
 * all of them alike.
 */
import { keepAliveAgent, post, usSince } from '../clients.ts';
import { compareWithPeers } from '../compare.ts';
import { restRequest, sharedTopology, VOICEGATE_PATHS, type BenchSettings, type Target } from '../harness.ts';
import { PEERS } from '../peers.ts';
import type { CaseResult, Goal, Row } from '../report.ts';
import { againstBaseline, spread, summarizeLatencies, type LatencySummary } from '../stats.ts';

const CASE = '1 REST latency, 1 in flight';
/** Cases 1 and 2 (and case 3's extproc) share these servers. */
export const REST_TOPOLOGY = { profile: 'instant', grpc: true, stub: true, peers: PEERS } as const;

async function sequential(t: Target, n: number): Promise<number[]> {
  const agent = keepAliveAgent();
  const { url, headers, body } = restRequest(t);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      const r = await post(agent, url, headers, body);
      const us = usSince(start);
      if (r.status !== 200) throw new Error(`${t.name}: status ${r.status}`);
      out.push(us);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

export async function restLatency(s: BenchSettings): Promise<CaseResult> {
  const perRound = s.quick ? 400 : 2_000;
  const warmup = s.quick ? 300 : 1_000;
  // Same servers as case 2 (the runner stops them once no later case wants them).
  const topo = await sharedTopology(s, REST_TOPOLOGY);
  for (const t of topo.targets) await sequential(t, warmup);
  const rounds: Record<string, LatencySummary[]> = {};
  for (let r = 0; r < s.rounds; r++) {
    // Rotate the order so no path always runs first (JIT, GC, cache state).
    const order = topo.targets.map((_, i) => topo.targets[(i + r) % topo.targets.length]!);
    for (const t of order) (rounds[t.name] ??= []).push(summarizeLatencies(await sequential(t, perRound)));
    s.log(`  round ${r + 1}/${s.rounds}: ${order.map((t) => `${t.name} p50 ${rounds[t.name]!.at(-1)!.p50.toFixed(0)} µs`).join(', ')}`);
  }
  const rows: Row[] = [];
  const direct = rounds['direct']!;
  const goals: Record<'p50' | 'p99', Goal[]> = {
    p50: [
      { cmp: 'le', value: 150, of: 'added', text: 'added ≤ 150 µs (in-proc)' },
      { cmp: 'le', value: 1.2, of: 'peer', peer: 'node floor', text: 'added ≤ 1.2 × node floor' },
    ],
    p99: [{ cmp: 'le', value: 300, of: 'added', text: 'added ≤ 300 µs (in-proc)' }],
  };
  for (const [metric, pick] of [
    ['p50', (x: LatencySummary) => x.p50],
    ['p99', (x: LatencySummary) => x.p99],
  ] as const) {
    const base = direct.map(pick);
    const perPath = Object.fromEntries(Object.entries(rounds).map(([k, v]) => [k, v.map(pick)]));
    const vs = compareWithPeers(perPath, { subjects: VOICEGATE_PATHS, peers: PEERS, of: 'added', baseline: 'direct' });
    for (const t of topo.targets) {
      const v = perPath[t.name]!;
      rows.push({
        case: CASE,
        metric,
        path: t.name,
        unit: 'µs',
        value: spread(v),
        ...againstBaseline(v, base, t.name === 'direct'),
        ...(vs[t.name] ? { vs: vs[t.name] } : {}),
        ...(t.name === 'edge in-proc' ? { goals: goals[metric] } : {}),
      });
    }
  }
  const sample = restRequest(topo.targets[0]!);
  return {
    id: 1,
    title: 'REST latency',
    rows,
    notes: [
      `POST ${sample.url.pathname} with a 2-character TTS body (Portkey: POST /v1/audio/speech, OpenAI-shaped, upstream named in x-portkey-custom-host), answered by the stub upstream with the same ~2 KB JSON body on every path; ${perRound} sequential requests per round on one keep-alive connection after ${warmup} warm-up requests per path; per-round p50/p99 from hrtime, then median (min … max) over ${s.rounds} rounds. "added" is the per-round difference to direct; "vs peers" divides the edge's added time by the peer's, round by round.`,
      'The gateway token is verified once, then served from the verification cache (as for any client reusing its token). No usage observer is attached to the edge.',
      ...topo.skipped.map((x) => `Peer skipped: ${x}.`),
    ],
    raw: rounds,
  };
}
