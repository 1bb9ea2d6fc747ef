/**
 * The end-to-end stack: the simulator of api.smallest.ai, the real decision compiled from
 * examples/voicegate.yaml (upstream swapped for the simulator's ephemeral port) and the embedded
 * edge, with the decision in process or over Envoy's ext_authz gRPC wire.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import { startExtprocServer, type ExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { startSimulator, type SimulatorHandle, type SimulatorOptions } from '../../simulator/index.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const EXAMPLE_CONFIG = fileURLToPath(new URL('../../examples/voicegate.yaml', import.meta.url));
export const EXAMPLES_DIR = fileURLToPath(new URL('../../examples/', import.meta.url));
/** The simulator URL the example config names; every stack swaps it for its own. */
const EXAMPLE_UPSTREAM = 'http://127.0.0.1:7070';

export const AUTHZ_MODES = ['inproc', 'grpc'] as const;
export type AuthzMode = (typeof AUTHZ_MODES)[number];

/** The example config's text with `upstream` pointing at `upstream`. */
export async function exampleConfigText(upstream: string): Promise<string> {
  const text = await readFile(EXAMPLE_CONFIG, 'utf8');
  if (!text.includes(`upstream: ${EXAMPLE_UPSTREAM}`)) throw new Error(`examples/voicegate.yaml no longer names ${EXAMPLE_UPSTREAM}`);
  return text.replace(`upstream: ${EXAMPLE_UPSTREAM}`, `upstream: ${upstream}`);
}

/** The compiled example config, relative secret files resolved against examples/. */
export async function exampleSnapshot(upstream: string): Promise<Snapshot> {
  return loadSnapshotFromText(await exampleConfigText(upstream), { origin: 'test:e2e', baseDir: EXAMPLES_DIR });
}

/** Provider keys of the example config, as the simulator must accept them. */
export function providerKeys(snapshot: Snapshot): { tts: string; stt: string } {
  const tts = snapshot.accounts.get('smallest-tts')?.token;
  const stt = snapshot.accounts.get('smallest-stt')?.token;
  if (!tts || !stt) throw new Error('example config lost its smallest-tts / smallest-stt accounts');
  return { tts, stt };
}

export interface Tokens {
  /** Team `voice`: every Smallest model. */
  readonly alice: string;
  /** Entitled to `pulse` only. */
  readonly bob: string;
  /** Valid token, no entitlement. */
  readonly mallory: string;
}

export async function devTokens(snapshot: Snapshot): Promise<Tokens> {
  return {
    alice: await signDevToken(snapshot, { user: 'alice', teams: ['voice'] }),
    bob: await signDevToken(snapshot, { user: 'bob' }),
    mallory: await signDevToken(snapshot, { user: 'mallory' }),
  };
}

export interface StackOptions {
  /** Simulator settings besides accounts and port; default the realistic profile, sped up. */
  readonly simulator?: Omit<SimulatorOptions, 'accounts' | 'port' | 'host'>;
  /** Units the simulator grants each provider key (default: the config's concurrency). */
  readonly units?: number;
  /** Upstream the config names instead of the simulator (e.g. a closed port). */
  readonly upstream?: string;
}

export interface Stack {
  readonly mode: AuthzMode;
  readonly edge: EdgeHandle;
  readonly sim: SimulatorHandle;
  readonly snapshot: Snapshot;
  readonly tokens: Tokens;
  readonly keys: { tts: string; stt: string };
  /** `ws://…` base of the edge. */
  readonly wsUrl: string;
  close(): Promise<void>;
}

/** Starts simulator, decision and edge; `close()` stops them in reverse order. */
export async function startStack(mode: AuthzMode, opts: StackOptions = {}): Promise<Stack> {
  // Keys come from the config, so the simulator is started after a first compile.
  const keys = providerKeys(await exampleSnapshot(EXAMPLE_UPSTREAM));
  const sim = await startSimulator({
    host: '127.0.0.1',
    port: 0,
    profile: 'realistic',
    firstAudioMs: 50,
    speedFactor: 20,
    ...opts.simulator,
    accounts: [
      { key: keys.tts, units: opts.units ?? 4 },
      { key: keys.stt, units: opts.units ?? 4 },
    ],
  });
  const snapshot = await exampleSnapshot(opts.upstream ?? sim.url);
  const source = new StaticSnapshotSource(snapshot);
  const inproc = createAuthorizer(source);
  let extproc: ExtprocServer | undefined;
  let client: ReturnType<typeof createGrpcAuthorizer> | undefined;
  if (mode === 'grpc') {
    extproc = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: inproc, source, logger: pino({ level: 'silent' }) });
    // Generous deadline: two test files share two cores; the 200 ms default is Envoy's, not ours.
    client = createGrpcAuthorizer(`127.0.0.1:${extproc.port}`, { timeoutMs: 5_000 });
  }
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client ?? inproc });
  return {
    mode,
    edge,
    sim,
    snapshot,
    tokens: await devTokens(snapshot),
    keys,
    wsUrl: edge.url.replace(/^http/, 'ws'),
    async close() {
      await edge.close();
      client?.close();
      await extproc?.close(0);
      await sim.close();
    },
  };
}
