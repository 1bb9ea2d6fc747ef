/**
 * Case 5 — SSE: time to the first and to the last event of a ~2-second TTS stream (32 characters;
 * 16, ~1 s, in --quick; the simulator's realistic profile at real time: first audio after 100 ms, then paced at 1×),
 * directly, through both edges and through the peers that relay SSE (the Node floor, nginx with
 * proxy_buffering off; Portkey cannot relay a non-JSON answer on Node 20), side by side in every batch.
 */
import http from 'node:http';
import { timeSse, TTS_SSE_PATH } from '../clients.ts';
import { compareWithPeers } from '../compare.ts';
import { startTopology, VOICEGATE_PATHS, type BenchSettings, type Target } from '../harness.ts';
import type { PeerName } from '../peers.ts';
import type { CaseResult, Goal, Row } from '../report.ts';
import { againstBaseline, median, spread } from '../stats.ts';

/** Full runs stream ~2 s of audio; quick runs ~1 s (the first-event figure, the goal, is the same). */
const caseName = (quick: boolean) => `5 SSE, ${quick ? 1 : 2} s TTS stream`;
/** 32 characters ≈ 2 s of speech at the simulator's 16 characters per second. */
const TEXT = 'Hello from the voicegate bench!!';
/** 16 characters ≈ 1 s: the quick run's stream, which halves the case's wall time. */
const QUICK_TEXT = 'Hello, voicegate';
const bodyOf = (text: string) => JSON.stringify({ text, voice_id: 'magnus', sample_rate: 24000 });
/** Quick runs warm up on a 2-character stream (~0.2 s): same code paths, a tenth of the wait. */
const WARMUP_BODY = JSON.stringify({ text: 'Hi', voice_id: 'magnus', sample_rate: 24000 });
/** Streams at once in every batch (one batch per path per round). */
const PER_PATH = 2;
const FIRST_AUDIO_MS = 100;
const SSE_PEERS: readonly PeerName[] = ['node floor', 'nginx'];

interface Batch {
  readonly firstMs: number;
  readonly lastMs: number;
  readonly events: number;
}

/**
 * One batch per path: PER_PATH streams at once on the path's own keep-alive connections (kept
 * across rounds, as a real client would). Paths take turns rather than run side by side: started
 * together, the paths would queue behind each other's synthesis in the simulator on the shared
 * core, and the path with more hops would always arrive last.
 */
async function batch(targets: readonly Target[], agents: ReadonlyMap<string, http.Agent>, body: string): Promise<Map<string, Batch>> {
  const runs: (readonly [string, Batch])[] = [];
  for (const t of targets) {
    runs.push(
      await (async () => {
      const url = new URL(`${t.origin}${t.prefix}${TTS_SSE_PATH}`);
      const headers = { authorization: t.authorization, 'content-type': 'application/json' };
      const agent = agents.get(t.name)!;
      const r = await Promise.all(Array.from({ length: PER_PATH }, () => timeSse(agent, url, headers, body)));
      const b: Batch = {
        firstMs: median(r.map((x) => x.firstEventUs / 1000)),
        lastMs: median(r.map((x) => x.lastEventUs / 1000)),
        events: r[0]!.events,
      };
      return [t.name, b] as const;
      })(),
    );
  }
  return new Map(runs);
}

export async function sseLatency(s: BenchSettings): Promise<CaseResult> {
  const rounds = s.quick ? s.rounds : 2 * s.rounds;
  const topo = await startTopology(s, { profile: 'realistic', grpc: true, firstAudioMs: FIRST_AUDIO_MS, speedFactor: 1, peers: SSE_PEERS });
  const agents = new Map(topo.targets.map((t) => [t.name, new http.Agent({ keepAlive: true, maxSockets: PER_PATH })]));
  try {
    const text = s.quick ? QUICK_TEXT : TEXT;
    const body = bodyOf(text);
    await batch(topo.targets, agents, s.quick ? WARMUP_BODY : body);
    const per: Record<string, Batch[]> = {};
    for (let r = 0; r < rounds; r++) {
      const b = await batch(topo.targets.map((_, i) => topo.targets[(i + r) % topo.targets.length]!), agents, body);
      for (const [name, x] of b) (per[name] ??= []).push(x);
      s.log(`  round ${r + 1}/${rounds}: ${topo.targets.map((t) => `${t.name} first ${b.get(t.name)!.firstMs.toFixed(2)} ms`).join(', ')}`);
    }
    const rows: Row[] = [];
    const direct = per['direct']!;
    for (const [metric, pick, goal] of [
      ['first event', (b: Batch) => b.firstMs, { cmp: 'le', value: 1, of: 'added', text: 'added ≤ 1 ms' }],
      ['last event', (b: Batch) => b.lastMs, undefined],
    ] as const) {
      const base = direct.map(pick);
      const perPath = Object.fromEntries(Object.entries(per).map(([k, v]) => [k, v.map(pick)]));
      const vs = compareWithPeers(perPath, { subjects: VOICEGATE_PATHS, peers: SSE_PEERS, of: 'added', baseline: 'direct' });
      for (const t of topo.targets) {
        const v = perPath[t.name]!;
        rows.push({
          case: caseName(s.quick),
          metric,
          path: t.name,
          unit: 'ms',
          value: spread(v),
          ...againstBaseline(v, base, t.name === 'direct'),
          ...(vs[t.name] ? { vs: vs[t.name] } : {}),
          ...(goal && vs[t.name] ? { goals: [goal as Goal] } : {}),
        });
      }
    }
    return {
      id: 5,
      title: 'SSE',
      rows,
      notes: [
        `POST ${TTS_SSE_PATH}, ${text.length} characters at 24 kHz → ${direct[0]!.events} events over ~${s.quick ? 1 : 2} s (simulator: first audio after ${FIRST_AUDIO_MS} ms, speed factor 1). Each round is one batch of ${PER_PATH} concurrent streams per path on kept-alive connections, paths in turn (rotating order), ${rounds} rounds after a warm-up batch; each figure is the batch median, then median (min … max) over rounds, "added" the per-batch difference to direct. The simulator paces with timers (±1 ms), which bounds how small an added time can be resolved; for the same reason a peer ratio of an added time near 1 ms is coarse.`,
        ...topo.skipped.map((x) => `Peer skipped: ${x}.`),
      ],
      raw: per,
    };
  } finally {
    for (const a of agents.values()) a.destroy();
    await topo.stop();
  }
}
