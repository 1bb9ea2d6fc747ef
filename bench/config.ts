/**
 * The benchmark's configuration: examples/voicegate.yaml with its upstream pointed at the
 * simulator's ephemeral port, so the gateway runs exactly the example policy (JWT → model →
 * account → key injection), and the provider keys that config injects, which the simulator accepts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSnapshotFromText } from '../extproc/adapters/files/config-file.ts';
import type { Snapshot } from '../extproc/core/config/snapshot.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const EXAMPLE_CONFIG = join(REPO_ROOT, 'examples', 'voicegate.yaml');

/** Units far above 64 connections, so the simulator never answers 429 during a run. */
export const BENCH_UNITS = 1_000_000;

/**
 * Each account's concurrency units in the bench (the schema's maximum): far above 64 connections,
 * and × 5 TTS WebSockets per unit far above the 5,000 idle sessions of case 6.
 */
export const BENCH_CONCURRENCY = 10_000;

/**
 * The example config's text with `upstream:` replaced (the example's own points at :7070) and every
 * account's `concurrency:` raised to {@link BENCH_CONCURRENCY}: the edge admits at most that many
 * syntheses at once per account, and the bench measures relaying, not the example's 4-unit plan
 * (64 connections, or WebSocket syntheses held open, would be refused past it).
 */
export function benchConfigText(upstream: string, opts: BenchConfigOptions = {}): string {
  const text = readFileSync(EXAMPLE_CONFIG, 'utf8');
  const replaced = text.replace(/^(\s*upstream:\s*)\S+/m, `$1${upstream}`);
  if (replaced === text && !text.includes(`upstream: ${upstream}`)) throw new Error('examples/voicegate.yaml has no upstream line to replace');
  const raised = replaced.replace(/^(\s*concurrency:\s*)\d+/gm, `$1${BENCH_CONCURRENCY}`);
  if (opts.teamCap === undefined) return raised;
  // Under `limits: teams:` (the only block line `  teams:`; collaborators' teams are inline lists).
  const capped = raised.replace(/^( {2}teams:[ \t]*)$/m, `$1\n    voice: { max_units: ${opts.teamCap}, max_sessions: ${opts.teamCap} }`);
  if (capped === raised) throw new Error('examples/voicegate.yaml has no limits.teams block to add the team cap to');
  return capped;
}

export interface BenchConfigOptions {
  /**
   * Adds `max_units` and `max_sessions` of this many for team `voice` (alice's team), so that every
   * admission also checks a team cap (case 7). No `requests_per_minute`: its schema maximum
   * (100,000) is below what one connection sends in a minute here.
   */
  readonly teamCap?: number;
}

/** Compiles the example policy against `upstream`; secrets resolve relative to examples/. */
export function benchSnapshot(upstream: string, opts: BenchConfigOptions = {}): Promise<Snapshot> {
  return loadSnapshotFromText(benchConfigText(upstream, opts), {
    origin: `bench:${EXAMPLE_CONFIG}`,
    baseDir: dirname(EXAMPLE_CONFIG),
    version: 1,
  });
}

/** Provider keys of the example accounts (what the edge injects and the simulator must accept). */
export function providerKeys(): string[] {
  return ['smallest-tts.key', 'smallest-stt.key'].map((f) => readFileSync(join(REPO_ROOT, 'examples', 'dev', f), 'utf8').trim());
}
