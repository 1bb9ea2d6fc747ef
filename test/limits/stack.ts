/**
 * A limits test stack: the simulator of api.smallest.ai (which enforces units per key, as the
 * provider does), the real decision compiled from a YAML config with the limits under test, and
 * the real edge with its own admission ledger (exposed so tests can also wait for a release).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/index.ts';
import { EXAMPLES_DIR } from '../e2e/stack.ts';

/** The `identity:` section of the limits configs: the development issuer of examples/dev (files relative to it). */
export const DEV_IDENTITY_YAML = `identity:
  issuers:
    - issuer: https://voicegate.local/dev
      audiences: [voicegate]
      jwks: file:dev/jwks.json
      algorithms: [ES256, RS256, EdDSA]
      dev_signing_key: file:dev/signing-key.jwk.json
`;

export interface LimitsStackOptions {
  /** `concurrency` of both accounts in the config. */
  readonly concurrency: number;
  /** Units the simulator sells each key; default the config's concurrency. */
  readonly simulatorUnits?: number;
  readonly wsPerUnit?: number;
  /** YAML lines under `limits:` (indented by the caller with two spaces). */
  readonly limits?: string;
  /** Realistic pacing, slowed so that syntheses stay in flight long enough to overlap. */
  readonly speedFactor?: number;
}

export interface LimitsStack {
  readonly edge: EdgeHandle;
  readonly sim: SimulatorHandle;
  readonly snapshot: Snapshot;
  readonly ledger: AdmissionLedger;
  readonly wsUrl: string;
  token(user: string, teams?: string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startLimitsStack(opts: LimitsStackOptions): Promise<LimitsStack> {
  const keys = {
    tts: (await readFile(join(EXAMPLES_DIR, 'dev/smallest-tts.key'), 'utf8')).trim(),
    stt: (await readFile(join(EXAMPLES_DIR, 'dev/smallest-stt.key'), 'utf8')).trim(),
  };
  const units = opts.simulatorUnits ?? opts.concurrency;
  const wsPerUnit = opts.wsPerUnit ?? 5;
  const sim = await startSimulator({
    host: '127.0.0.1',
    port: 0,
    profile: 'realistic',
    firstAudioMs: 20,
    speedFactor: opts.speedFactor ?? 20,
    wsConnectionsPerUnit: wsPerUnit,
    accounts: [
      { key: keys.tts, units },
      { key: keys.stt, units },
    ],
  });
  const yaml = `
version: 1
${DEV_IDENTITY_YAML}providers:
  smallest:
    upstream: ${sim.url}
    default_models: { tts: lightning-v3.1, stt: pulse }
accounts:
  - name: smallest-tts
    token: file:dev/smallest-tts.key
    concurrency: ${opts.concurrency}
    ws_per_unit: ${wsPerUnit}
    collaborators: { teams: [voice], users: [outsider] }
  - name: smallest-stt
    token: file:dev/smallest-stt.key
    concurrency: ${opts.concurrency}
    ws_per_unit: ${wsPerUnit}
    collaborators: { teams: [voice], users: [outsider] }
models:
  - { name: lightning-v3.1, type: tts, account: smallest-tts, aliases: [lightning_v3.1] }
  - { name: pulse, type: stt, account: smallest-stt }
limits:
${opts.limits ?? '  users: {}'}
`;
  const snapshot = await loadSnapshotFromText(yaml, { origin: 'test:limits', baseDir: EXAMPLES_DIR });
  const source = new StaticSnapshotSource(snapshot);
  const ledger = createAdmissionLedger();
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), limits: ledger });
  return {
    edge,
    sim,
    snapshot,
    ledger,
    wsUrl: edge.url.replace(/^http/, 'ws'),
    token: (user, teams = []) => signDevToken(snapshot, { user, teams }),
    async close() {
      await edge.close();
      await sim.close();
    },
  };
}

/** POSTs a sync TTS request; `delayMs` makes the simulator hold its unit that long first. */
export async function speak(stack: LimitsStack, token: string, delayMs = 0, signal?: AbortSignal): Promise<Response> {
  return fetch(`${stack.edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      ...(delayMs > 0 ? { 'x-sim-delay-ms': String(delayMs) } : {}),
    },
    body: JSON.stringify({ text: 'Hello from the limits suite', voice_id: 'magnus' }),
    ...(signal ? { signal } : {}),
  });
}

/** TTS requests the simulator received. */
export function ttsRequestsSeen(sim: SimulatorHandle): number {
  return sim.requests().filter((r) => r.url.includes('/get_speech') && !r.upgrade).length;
}
