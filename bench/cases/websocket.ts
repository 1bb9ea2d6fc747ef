/**
 * Case 6 — WebSocket relay: per-message round trip at one in flight and relayed messages per
 * second under load, directly to the simulator and through the edge (in-proc decision; frames are
 * never re-checked, so the gRPC edge relays the same way); then memory per idle session: the
 * edge's RSS before and after opening N idle sessions through it, ÷ N.
 */
import WebSocket from 'ws';
import { closeSockets, isChunkFrame, openSocket, TTS_WS_PATH, usSince, WS_TTS_REQUEST } from '../clients.ts';
import { startTopology, type BenchSettings, type Target } from '../harness.ts';
import type { CaseResult, Row } from '../report.ts';
import { againstBaseline, spread, summarizeLatencies, type LatencySummary } from '../stats.ts';

const CASE = '6 WebSocket relay';
/** Connections and requests in flight on each for the throughput figure. */
const CONNECTIONS = 16;
const WINDOW = 8;
/** Sessions opened at once while filling up for the memory figure. */
const OPEN_BATCH = 100;

function wsUrl(t: Target): string {
  // `timeout` keeps the simulator from closing idle sessions during the memory figure.
  return `${t.origin.replace('http:', 'ws:')}${t.prefix}${TTS_WS_PATH}?timeout=900`;
}

/** Sequential request → audio-frame round trips on one socket, µs. */
async function pingPong(t: Target, n: number): Promise<number[]> {
  const ws = await openSocket(wsUrl(t), t.authorization);
  const out: number[] = [];
  try {
    let waiting: (() => void) | undefined;
    ws.on('message', (d) => {
      if (isChunkFrame(d)) waiting?.();
    });
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) => {
        waiting = resolve;
        ws.send(WS_TTS_REQUEST, (err) => err && reject(err));
      });
      out.push(usSince(start));
    }
  } finally {
    await closeSockets([ws]);
  }
  return out;
}

/** Messages relayed per second (each request frame in, each audio frame out) over `seconds`. */
async function flood(t: Target, seconds: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: CONNECTIONS }, () => openSocket(wsUrl(t), t.authorization)));
  let sent = 0;
  let received = 0;
  let running = true;
  const start = process.hrtime.bigint();
  for (const ws of sockets) {
    ws.on('message', (d) => {
      if (!isChunkFrame(d)) return;
      received++;
      if (running) {
        sent++;
        ws.send(WS_TTS_REQUEST);
      }
    });
    for (let i = 0; i < WINDOW; i++) {
      sent++;
      ws.send(WS_TTS_REQUEST);
    }
  }
  await new Promise((r) => setTimeout(r, seconds * 1000));
  running = false;
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  // Count only what completed inside the window: frames still in flight are dropped with the sockets.
  const rate = (2 * received) / elapsed;
  await closeSockets(sockets);
  return rate;
}

async function settle(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

interface Memory {
  readonly sessions: number;
  readonly edgeBeforeKiB: number;
  readonly edgeAfterKiB: number;
  readonly simBeforeKiB: number;
  readonly simAfterKiB: number;
}

/** Fresh simulator and edge (nothing else ever ran on them), full GC before each reading. */
async function idleMemory(s: BenchSettings, sessions: number): Promise<Memory> {
  const topo = await startTopology(s, { profile: 'instant', grpc: false, nodeFlags: ['--expose-gc'] });
  const t = topo.targets.find((x) => x.name === 'edge in-proc')!;
  const read = async () => {
    topo.edge.collectGarbage();
    topo.sim.collectGarbage();
    await settle(1_000);
    return { edge: topo.edge.rssKiB(), sim: topo.sim.rssKiB() };
  };
  // Warm the code paths and the pools first so that one-off allocations are not charged to sessions.
  await closeSockets(await Promise.all(Array.from({ length: OPEN_BATCH }, () => openSocket(wsUrl(t), t.authorization))));
  const before = await read();
  const edgeBeforeKiB = before.edge;
  const simBeforeKiB = before.sim;
  const open: WebSocket[] = [];
  try {
    while (open.length < sessions) {
      const n = Math.min(OPEN_BATCH, sessions - open.length);
      open.push(...(await Promise.all(Array.from({ length: n }, () => openSocket(wsUrl(t), t.authorization)))));
    }
    await settle(1_000);
    const after = await read();
    return { sessions, edgeBeforeKiB, edgeAfterKiB: after.edge, simBeforeKiB, simAfterKiB: after.sim };
  } finally {
    for (let i = 0; i < open.length; i += 1000) await closeSockets(open.slice(i, i + 1000));
    await topo.stop();
  }
}

export async function websocketRelay(s: BenchSettings): Promise<CaseResult> {
  const perRound = s.quick ? 400 : 2_000;
  const floodSeconds = s.quick ? 2 : 5;
  const sessions = s.quick ? 2_000 : 5_000;
  const topo = await startTopology(s, { profile: 'instant', grpc: false });
  try {
    const targets = topo.targets;
    for (const t of targets) {
      await pingPong(t, s.quick ? 200 : 1_000);
      await flood(t, 1);
    }
    const lat: Record<string, LatencySummary[]> = {};
    const rate: Record<string, number[]> = {};
    for (let r = 0; r < s.rounds; r++) {
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) (lat[t.name] ??= []).push(summarizeLatencies(await pingPong(t, perRound)));
      for (const t of order) (rate[t.name] ??= []).push(await flood(t, floodSeconds));
      s.log(`  round ${r + 1}/${s.rounds}: ${order.map((t) => `${t.name} p50 ${lat[t.name]!.at(-1)!.p50.toFixed(0)} µs, ${rate[t.name]!.at(-1)!.toFixed(0)} msg/s`).join('; ')}`);
    }

    const rows: Row[] = [];
    const direct = lat['direct']!;
    for (const [metric, pick] of [
      ['round trip p50', (x: LatencySummary) => x.p50],
      ['round trip p99', (x: LatencySummary) => x.p99],
    ] as const) {
      const base = direct.map(pick);
      for (const t of targets) {
        const v = lat[t.name]!.map(pick);
        rows.push({
          case: CASE,
          metric,
          path: t.name,
          unit: 'µs',
          value: spread(v),
          ...againstBaseline(v, base, t.name === 'direct'),
        });
      }
    }
    await topo.stop();
    s.log(`  opening ${sessions} idle sessions through a fresh edge…`);
    const mem = await idleMemory(s, sessions);
    const baseRate = spread(rate['direct']!).median;
    for (const t of targets) {
      rows.push({ case: CASE, metric: `messages/s, ${CONNECTIONS}×${WINDOW} in flight`, path: t.name, unit: 'msg/s', value: spread(rate[t.name]!), ...(t.name === 'direct' ? {} : { baseline: baseRate }) });
    }
    const perEdge = ((mem.edgeAfterKiB - mem.edgeBeforeKiB) / mem.sessions);
    const perSim = ((mem.simAfterKiB - mem.simBeforeKiB) / mem.sessions);
    const one = (v: number) => ({ median: v, min: v, max: v, n: 1 });
    rows.push({ case: CASE, metric: 'RSS per idle session', path: 'simulator (upstream end)', unit: 'KiB', value: one(perSim) });
    rows.push({
      case: CASE,
      metric: 'RSS per idle session',
      path: 'edge in-proc',
      unit: 'KiB',
      value: one(perEdge),
      baseline: perSim,
      goal: { cmp: 'le', value: 16, of: 'value', text: '≤ 16 KiB' },
    });
    return {
      id: 6,
      title: 'WebSocket relay',
      rows,
      notes: [
        `TTS WebSocket (${TTS_WS_PATH}); each request is a 2-character text at 8 kHz answered by one audio frame (~2.7 KB). Round trip: request → audio frame on one socket, ${perRound} per round; messages/s: ${CONNECTIONS} sockets with ${WINDOW} requests each in flight for ${floodSeconds} s, counting request and audio frames (2 per exchange); ${s.rounds} rounds after a warm-up.`,
        `Idle memory: VmRSS of the edge process before and after opening ${mem.sessions.toLocaleString('en-US')} sessions through it (each is a client socket plus an upstream socket in the edge), on a fresh simulator and edge (started with --expose-gc), after a warm-up of ${OPEN_BATCH} sessions, each reading after a full GC and 1 s of settling: edge ${Math.round(mem.edgeBeforeKiB / 1024)} → ${Math.round(mem.edgeAfterKiB / 1024)} MiB, simulator ${Math.round(mem.simBeforeKiB / 1024)} → ${Math.round(mem.simAfterKiB / 1024)} MiB. Single measurement (no rounds). The simulator row is the same sessions' cost at the upstream, as a reference for a plain \`ws\` server session.`,
      ],
      raw: { latency: lat, rate, memory: mem },
    };
  } finally {
    await topo.stop();
  }
}
