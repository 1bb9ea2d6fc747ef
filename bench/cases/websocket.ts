/**
 * Case 6 — WebSocket relay: per-message round trip at one in flight and relayed messages per
 * second under load, directly to the simulator, through the edge (in-proc decision; frames are
 * never re-checked, so the gRPC edge relays the same way) and through the peers that relay
 * WebSockets (the Node floor's `ws` relay, nginx); then memory per idle session: each relay's RSS
 * before and after opening N idle sessions through it, ÷ N.
 */
import WebSocket from 'ws';
import { closeSockets, isChunkFrame, openSocket, TTS_WS_PATH, usSince, WS_TTS_REQUEST } from '../clients.ts';
import { compareWithPeers } from '../compare.ts';
import { startTopology, VOICEGATE_PATHS, type BenchSettings, type Target, type Topology } from '../harness.ts';
import type { PeerName } from '../peers.ts';
import type { ServerChild } from '../processes.ts';
import type { CaseResult, Row } from '../report.ts';
import { againstBaseline, spread, summarizeLatencies, type LatencySummary } from '../stats.ts';

const CASE = '6 WebSocket relay';
/** Connections and requests in flight on each for the throughput figure. */
const CONNECTIONS = 16;
const WINDOW = 8;
/** Sessions opened at once while filling up for the memory figure. */
const OPEN_BATCH = 100;
const WS_PEERS: readonly PeerName[] = ['node floor', 'nginx'];

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
        // Bounded: a relay that answers something else (an error frame) must fail the case, not hang it.
        const timer = setTimeout(() => reject(new Error(`${t.name}: no audio frame within 10 s (request ${i + 1})`)), 10_000);
        waiting = () => {
          clearTimeout(timer);
          resolve();
        };
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
  /** Per relay (edge in-proc and each peer): VmRSS before and after its sessions, KiB. */
  readonly relays: Record<string, { readonly beforeKiB: number; readonly afterKiB: number }>;
  /** The simulator during the edge's sessions (the upstream end of the same sessions). */
  readonly simBeforeKiB: number;
  readonly simAfterKiB: number;
  readonly skipped: readonly string[];
}

/**
 * Fresh simulator, edge and peers (nothing ever ran through them; the Node ones with --expose-gc,
 * a full GC before each reading). One relay at a time: its sessions are opened, its RSS read, and
 * closed again before the next relay's, the edge first so that the simulator's figure is its own.
 */
async function idleMemory(topo: Topology, sessions: number, settleMs: number): Promise<Memory> {
  const gcAll = (c: ServerChild) => {
    c.collectGarbage();
    topo.upstream.collectGarbage();
  };
  const relays: Record<string, { beforeKiB: number; afterKiB: number }> = {};
  let sim = { before: 0, after: 0 };
  try {
    for (const t of topo.targets) {
      if (t.name === 'direct') continue;
      const relay = t.gateway[0]!;
      const read = async () => {
        gcAll(relay);
        await settle(settleMs);
        return { relay: relay.rssKiB(), sim: topo.upstream.rssKiB() };
      };
      // Warm the code paths and the pools first so that one-off allocations are not charged to sessions.
      await closeSockets(await Promise.all(Array.from({ length: OPEN_BATCH }, () => openSocket(wsUrl(t), t.authorization))));
      const before = await read();
      const open: WebSocket[] = [];
      try {
        while (open.length < sessions) {
          const n = Math.min(OPEN_BATCH, sessions - open.length);
          open.push(...(await Promise.all(Array.from({ length: n }, () => openSocket(wsUrl(t), t.authorization)))));
        }
        await settle(settleMs);
        const after = await read();
        relays[t.name] = { beforeKiB: before.relay, afterKiB: after.relay };
        if (t.name === 'edge in-proc') sim = { before: before.sim, after: after.sim };
      } finally {
        for (let i = 0; i < open.length; i += 1000) await closeSockets(open.slice(i, i + 1000));
      }
    }
    return { sessions, relays, simBeforeKiB: sim.before, simAfterKiB: sim.after, skipped: topo.skipped };
  } finally {
    await topo.stop();
  }
}

export async function websocketRelay(s: BenchSettings): Promise<CaseResult> {
  const perRound = s.quick ? 400 : 2_000;
  const floodSeconds = s.quick ? 1 : 5;
  const sessions = s.quick ? 2_000 : 5_000;
  const settleMs = s.quick ? 500 : 1_000;
  // Both sets of servers start together (both cores; nothing is measured yet). The memory set then
  // sits idle, nothing running through it, until its turn.
  const [relayR, memR] = await Promise.allSettled([
    startTopology(s, { profile: 'instant', grpc: false, peers: WS_PEERS }),
    startTopology(s, { profile: 'instant', grpc: false, nodeFlags: ['--expose-gc'], peers: WS_PEERS }),
  ]);
  if (relayR.status === 'rejected' || memR.status === 'rejected') {
    if (relayR.status === 'fulfilled') await relayR.value.stop();
    if (memR.status === 'fulfilled') await memR.value.stop();
    throw relayR.status === 'rejected' ? relayR.reason : (memR as PromiseRejectedResult).reason;
  }
  const topo = relayR.value;
  const memTopo = memR.value;
  try {
    const targets = topo.targets;
    for (const t of targets) {
      await pingPong(t, s.quick ? 200 : 1_000);
      await flood(t, s.quick ? 0.5 : 1);
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
      const perPath = Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, v.map(pick)]));
      const vs = compareWithPeers(perPath, { subjects: VOICEGATE_PATHS, peers: WS_PEERS, of: 'added', baseline: 'direct' });
      for (const t of targets) {
        const v = perPath[t.name]!;
        rows.push({
          case: CASE,
          metric,
          path: t.name,
          unit: 'µs',
          value: spread(v),
          ...againstBaseline(v, base, t.name === 'direct'),
          ...(vs[t.name] ? { vs: vs[t.name] } : {}),
        });
      }
    }
    await topo.stop();
    s.log(`  opening ${sessions} idle sessions through a fresh edge…`);
    const mem = await idleMemory(memTopo, sessions, settleMs);
    const baseRate = spread(rate['direct']!).median;
    const rateVs = compareWithPeers(rate, { subjects: VOICEGATE_PATHS, peers: WS_PEERS, of: 'value' });
    for (const t of targets) {
      rows.push({
        case: CASE,
        metric: `messages/s, ${CONNECTIONS}×${WINDOW} in flight`,
        path: t.name,
        unit: 'msg/s',
        value: spread(rate[t.name]!),
        ...(t.name === 'direct' ? {} : { baseline: baseRate }),
        ...(rateVs[t.name] ? { vs: rateVs[t.name] } : {}),
        ...(t.name === 'edge in-proc' ? { goals: [{ cmp: 'ge', value: 0.9, of: 'peer', peer: 'node floor', text: '≥ 0.9 × node floor' }] as const } : {}),
      });
    }
    const perSim = (mem.simAfterKiB - mem.simBeforeKiB) / mem.sessions;
    const one = (v: number) => ({ median: v, min: v, max: v, n: 1 });
    const perRelay = Object.fromEntries(Object.entries(mem.relays).map(([k, m]) => [k, [(m.afterKiB - m.beforeKiB) / mem.sessions]]));
    // One measurement, so the "ratio spread" is a single value; the edge's memory ÷ each peer's.
    const memVs = compareWithPeers(perRelay, { subjects: VOICEGATE_PATHS, peers: WS_PEERS, of: 'value' });
    rows.push({ case: CASE, metric: 'RSS per idle session', path: 'simulator (upstream end)', unit: 'KiB', value: one(perSim) });
    for (const [name, [v]] of Object.entries(perRelay)) {
      rows.push({
        case: CASE,
        metric: 'RSS per idle session',
        path: name,
        unit: 'KiB',
        value: one(v!),
        baseline: perSim,
        ...(memVs[name] ? { vs: memVs[name] } : {}),
        ...(name === 'edge in-proc' ? { goals: [{ cmp: 'le', value: 16, of: 'value', text: '≤ 16 KiB' }] as const } : {}),
      });
    }
    const mib = (k: number) => Math.round(k / 1024);
    return {
      id: 6,
      title: 'WebSocket relay',
      rows,
      notes: [
        `TTS WebSocket (${TTS_WS_PATH}); each request is a 2-character text at 8 kHz answered by one audio frame (~2.7 KB). Round trip: request → audio frame on one socket, ${perRound} per round; messages/s: ${CONNECTIONS} sockets with ${WINDOW} requests each in flight for ${floodSeconds} s, counting request and audio frames (2 per exchange); ${s.rounds} rounds after a warm-up.`,
        `Idle memory: VmRSS of each relay (nginx: master + worker) before and after opening ${mem.sessions.toLocaleString('en-US')} sessions through it (each is a client socket plus an upstream socket in the relay), on a fresh simulator, edge and peers (the Node ones started with --expose-gc), one relay at a time (its sessions closed before the next), after a warm-up of ${OPEN_BATCH} sessions, each reading after a full GC and ${settleMs / 1000} s of settling: ${Object.entries(mem.relays).map(([k, m]) => `${k} ${mib(m.beforeKiB)} → ${mib(m.afterKiB)} MiB`).join(', ')}, simulator ${mib(mem.simBeforeKiB)} → ${mib(mem.simAfterKiB)} MiB during the edge's sessions. Single measurement (no rounds). The simulator row is the same sessions' cost at the upstream, as a reference for a plain \`ws\` server session; "vs peers" on memory divides the edge's KiB by the peer's (below 1: leaner).`,
        ...[...topo.skipped, ...mem.skipped].map((x) => `Peer skipped: ${x}.`),
      ],
      raw: { latency: lat, rate, memory: mem },
    };
  } finally {
    await Promise.all([topo.stop(), memTopo.stop()]);
  }
}
