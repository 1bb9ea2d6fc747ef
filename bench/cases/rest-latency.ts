/**
 * Case 1 — REST added latency at one request in flight: a small TTS `get_speech` POST sent
 * back-to-back on one keep-alive connection, timed with hrtime (µs), directly to the simulator,
 * through the edge deciding in process, and through the edge asking `voicegate extproc` over gRPC.
 * Paths take turns inside every round, so drift hits all three alike.
 */
import { keepAliveAgent, post, SMALL_TTS_BODY, TTS_SYNC_PATH, usSince } from '../clients.ts';
import { startTopology, type BenchSettings, type Target } from '../harness.ts';
import type { CaseResult, Goal, Row } from '../report.ts';
import { againstBaseline, spread, summarizeLatencies, type LatencySummary } from '../stats.ts';

const CASE = '1 REST latency, 1 in flight';

async function sequential(t: Target, n: number): Promise<number[]> {
  const agent = keepAliveAgent();
  const url = new URL(`${t.origin}${t.prefix}${TTS_SYNC_PATH}`);
  const headers = { authorization: t.authorization, 'content-type': 'application/json' };
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      const r = await post(agent, url, headers, SMALL_TTS_BODY);
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
  const topo = await startTopology(s, { profile: 'instant', grpc: true });
  try {
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
    for (const [metric, pick, goal] of [
      ['p50', (x: LatencySummary) => x.p50, { cmp: 'le', value: 150, of: 'added', text: 'added ≤ 150 µs (in-proc)' }],
      ['p99', (x: LatencySummary) => x.p99, { cmp: 'le', value: 300, of: 'added', text: 'added ≤ 300 µs (in-proc)' }],
    ] as const) {
      const base = direct.map(pick);
      for (const t of topo.targets) {
        const v = rounds[t.name]!.map(pick);
        const isBase = t.name === 'direct';
        rows.push({
          case: CASE,
          metric,
          path: t.name,
          unit: 'µs',
          value: spread(v),
          ...againstBaseline(v, base, isBase),
          ...(t.name === 'edge in-proc' ? { goal: goal as Goal } : {}),
        });
      }
    }
    return {
      id: 1,
      title: 'REST latency',
      rows,
      notes: [
        `POST ${TTS_SYNC_PATH} with a 2-character text at 8 kHz (2 KB answer), ${perRound} sequential requests per round on one keep-alive connection after ${warmup} warm-up requests per path; per-round p50/p99 from hrtime, then median (min … max) over ${s.rounds} rounds. "added" is the per-round difference to direct.`,
        'The gateway token is verified once, then served from the verification cache (as for any client reusing its token). No usage observer is attached to the edge.',
      ],
      raw: rounds,
    };
  } finally {
    await topo.stop();
  }
}
