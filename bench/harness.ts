/**
 * What every case gets: the run's settings, a way to start the servers it needs (each in its own
 * pinned child), the gateway token and the provider key, and the three paths a request can take.
 */
import { signDevToken } from '../extproc/main/commands/token.ts';
import { SMALL_TTS_BODY, TTS_SYNC_PATH } from './clients.ts';
import { benchSnapshot, providerKeys } from './config.ts';
import { PORTKEY_BODY, PORTKEY_PATH, portkeyHeaders, startPeer, type PeerName } from './peers.ts';
import { startServer, type CpuPlan, type ServerChild } from './processes.ts';

export interface BenchSettings {
  readonly quick: boolean;
  /** Measured rounds per figure (after warm-up). */
  readonly rounds: number;
  readonly cpu: CpuPlan;
  /** Extra node flags for edge children (`--cpu-prof …` when profiling). */
  readonly edgeNodeFlags: readonly string[];
  log(message: string): void;
}

/** Voicegate's own paths (the subjects of every peer ratio). */
export const VOICEGATE_PATHS = ['edge in-proc', 'edge gRPC'] as const;

/** One way to reach the upstream: base URL and the credential that path expects. */
export interface Target {
  readonly name: 'direct' | (typeof VOICEGATE_PATHS)[number] | PeerName;
  /** `http://127.0.0.1:PORT` */
  readonly origin: string;
  /** Path prefix before the provider path: '' direct, `/smallest` through the edge. */
  readonly prefix: string;
  readonly authorization: string;
  /** The server processes doing the work on this path (for CPU accounting), upstream excluded. */
  readonly gateway: readonly ServerChild[];
  /** A REST request of another shape than Smallest's TTS POST (Portkey's OpenAI-shaped route). */
  readonly rest?: { readonly path: string; readonly body: string; readonly headers: Readonly<Record<string, string>> };
}

/** The REST request of cases 1 and 2 on a path: URL, headers and body. */
export function restRequest(t: Target): { url: URL; headers: Record<string, string>; body: string } {
  const headers = { authorization: t.authorization, 'content-type': 'application/json', ...(t.rest?.headers ?? {}) };
  return t.rest
    ? { url: new URL(`${t.origin}${t.rest.path}`), headers, body: t.rest.body }
    : { url: new URL(`${t.origin}${t.prefix}${TTS_SYNC_PATH}`), headers, body: SMALL_TTS_BODY };
}

export interface Topology {
  /** The simulator, or the stub upstream with {@link TopologyOptions.stub}. */
  readonly upstream: ServerChild;
  readonly edge: ServerChild;
  readonly extproc?: ServerChild;
  readonly edgeGrpc?: ServerChild;
  readonly targets: readonly Target[];
  /** Peers that were asked for but could not start, with the reason (shown in the case's notes). */
  readonly skipped: readonly string[];
  stop(): Promise<void>;
}

export interface TopologyOptions {
  readonly profile: 'instant' | 'realistic';
  /** Also start the decision service and an edge that asks it over gRPC. */
  readonly grpc: boolean;
  readonly firstAudioMs?: number;
  readonly speedFactor?: number;
  /** Extra node flags for every child of this topology (e.g. `--expose-gc`). */
  readonly nodeFlags?: readonly string[];
  /**
   * Upstream is bench/servers/stub.ts (one small JSON answer for every path) instead of the
   * simulator: the one upstream every peer, Portkey included, can relay.
   */
  readonly stub?: boolean;
  /** Also start these peers in front of the same upstream (skipped ones are left out). */
  readonly peers?: readonly PeerName[];
}

/** The provider key the simulator accepts for TTS (what the edge injects). */
export const SIM_KEY = providerKeys()[0] as string;

let tokenPromise: Promise<string> | undefined;

/** A development JWT for `alice` of team `voice` (entitled to every model), valid for 4 hours. */
export function gatewayToken(): Promise<string> {
  tokenPromise ??= benchSnapshot('http://127.0.0.1:1').then((s) => signDevToken(s, { user: 'alice', teams: ['voice'], ttlSeconds: 4 * 3600 }));
  return tokenPromise;
}

/**
 * Starts simulator (or stub) → edge (in-proc) [+ extproc and edge (gRPC)] [+ peers], every child
 * pinned to the SUT core. Only the upstream comes first (every other child needs its port); the
 * rest start side by side (each child is pinned once READY, so startup uses both cores).
 */
export async function startTopology(s: BenchSettings, o: TopologyOptions): Promise<Topology> {
  const t0 = Date.now();
  const cpu = { ...(s.cpu.pinned ? { cpu: s.cpu.sutCpu } : {}), nodeFlags: o.nodeFlags ?? [] };
  const edgeFlags = { nodeFlags: [...(o.nodeFlags ?? []), ...s.edgeNodeFlags] };
  const started: ServerChild[] = [];
  const stop = async () => {
    await Promise.all(started.splice(0).map((c) => c.stop()));
  };
  const track = async (p: Promise<ServerChild>): Promise<ServerChild> => {
    const c = await p;
    started.push(c);
    return c;
  };
  try {
    const sim = await track(
      o.stub
        ? startServer('stub', ['--body', 'json'], cpu)
        : startServer(
            'simulator',
            ['--profile', o.profile, '--first-audio-ms', String(o.firstAudioMs ?? 100), '--speed-factor', String(o.speedFactor ?? 1)],
            cpu,
          ),
    );
    const upstream = `http://127.0.0.1:${sim.port}`;
    const upstreamUrl = new URL(upstream);
    const edgeP = track(startServer('edge', ['--upstream', upstream, '--authz', 'inproc'], { ...cpu, ...edgeFlags }));
    const grpcP = o.grpc
      ? track(startServer('extproc', ['--upstream', upstream], { ...cpu, ...edgeFlags })).then(async (extproc) => ({
          extproc,
          edgeGrpc: await track(startServer('edge', ['--upstream', upstream, '--authz', `127.0.0.1:${extproc.port}`], { ...cpu, ...edgeFlags })),
        }))
      : Promise.resolve(undefined);
    const peerP = (o.peers ?? []).map(async (name): Promise<ServerChild | string> => {
      try {
        const peer = await startPeer(name, upstreamUrl, { cpu: s.cpu, nodeFlags: o.nodeFlags ?? [] }, s.log);
        if (!peer) return `${name}: not installed`;
        started.push(peer);
        return peer;
      } catch (err) {
        // A peer that fails to start costs its rows, not the run.
        const why = (err as Error).message.split('\n').slice(0, 3).join(' ');
        s.log(`  ${name} skipped: ${why}`);
        return `${name}: ${why}`;
      }
    });
    // allSettled first: on a failure every child that did start is in `started` before stop() runs.
    const [edgeR, grpcR, tokenR, ...peerR] = await Promise.allSettled([edgeP, grpcP, gatewayToken(), ...peerP]);
    for (const r of [edgeR, grpcR, tokenR]) if (r.status === 'rejected') throw r.reason;
    const edge = (edgeR as PromiseFulfilledResult<ServerChild>).value;
    const grpc = (grpcR as PromiseFulfilledResult<{ extproc: ServerChild; edgeGrpc: ServerChild } | undefined>).value;
    const token = (tokenR as PromiseFulfilledResult<string>).value;
    const targets: Target[] = [
      { name: 'direct', origin: upstream, prefix: '', authorization: `Bearer ${SIM_KEY}`, gateway: [] },
      { name: 'edge in-proc', origin: `http://127.0.0.1:${edge.port}`, prefix: '/smallest', authorization: `Bearer ${token}`, gateway: [edge] },
    ];
    if (grpc) {
      targets.push({ name: 'edge gRPC', origin: `http://127.0.0.1:${grpc.edgeGrpc.port}`, prefix: '/smallest', authorization: `Bearer ${token}`, gateway: [grpc.edgeGrpc, grpc.extproc] });
    }
    const skipped: string[] = [];
    (o.peers ?? []).forEach((name, i) => {
      const r = peerR[i]!;
      const peer = r.status === 'fulfilled' ? r.value : String(r.reason);
      if (typeof peer === 'string') {
        skipped.push(peer);
        return;
      }
      // Peers forward the client's own credential, like a call made direct; no prefix to strip.
      targets.push({
        name,
        origin: `http://127.0.0.1:${peer.port}`,
        prefix: '',
        authorization: `Bearer ${SIM_KEY}`,
        gateway: [peer],
        ...(name === 'portkey' ? { rest: { path: PORTKEY_PATH, body: PORTKEY_BODY, headers: portkeyHeaders(upstreamUrl) } } : {}),
      });
    });
    s.log(`  ${started.length} servers started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return { upstream: sim, edge, ...(grpc ? grpc : {}), targets, skipped, stop };
  } catch (err) {
    // Every start has settled by now (allSettled), so `started` holds every child that came up.
    await stop();
    throw err;
  }
}

let shared: { readonly key: string; readonly topology: Promise<Topology> } | undefined;

/**
 * The topology of `o`, started once and kept for the next case that asks for the same one (cases 1
 * and 2 run the same servers; case 3 borrows its extproc): a quick run spends its budget measuring,
 * not starting children. Cases never stop it; the runner does, with {@link releaseSharedTopology}.
 */
export function sharedTopology(s: BenchSettings, o: TopologyOptions): Promise<Topology> {
  const key = JSON.stringify(o);
  if (shared?.key !== key) {
    const previous = shared;
    const topology = (previous ? releaseSharedTopology() : Promise.resolve()).then(() => startTopology(s, o));
    shared = { key, topology };
    // A failed start is not kept: the next case starts afresh.
    topology.catch(() => {
      if (shared?.topology === topology) shared = undefined;
    });
  }
  return shared.topology;
}

/** The shared topology if one is running (and started), else undefined. */
export async function currentSharedTopology(): Promise<Topology | undefined> {
  return shared ? shared.topology.catch(() => undefined) : undefined;
}

export async function releaseSharedTopology(): Promise<void> {
  const current = shared;
  shared = undefined;
  if (current) await current.topology.then((t) => t.stop(), () => undefined);
}

/** Sum of CPU seconds used so far by a set of processes. */
export function cpuOf(children: readonly ServerChild[]): number {
  let t = 0;
  for (const c of children) t += c.cpuSeconds();
  return t;
}
