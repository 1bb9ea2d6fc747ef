/**
 * The admission ledger of a benchmark child (`--limits pod|none|cluster`), built as the product's
 * commands build it:
 * - `pod`: the edge's default — every unit of each account granted to this process;
 * - `cluster`: the product's limits component (units leased from the grant ledger on NATS KV,
 *   `--nats URL --bucket NAME`), wrapped in the limit metrics as `voicegate edge|extproc` do, so the
 *   measured path is the one a cluster pod runs;
 * - `none`: a ledger that admits everything and counts nothing. The product has no such switch
 *   (limits are always enforced); it exists so that case 7 can measure what limits add.
 * `--team-cap N` adds team `voice`'s max_units/max_sessions to the snapshot (bench/config.ts).
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { Snapshot } from '../../extproc/core/config/snapshot.ts';
import type { AdmissionKind } from '../../extproc/core/limits/kinds.ts';
import type { Admission, AdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { limitMetrics, type LimitMetrics } from '../../extproc/adapters/prometheus/limit-metrics.ts';
import { limitsComponent } from '../../extproc/main/components/limits.ts';
import { benchSnapshot } from '../config.ts';
import { arg } from './lifecycle.ts';

export type BenchLimitsMode = 'pod' | 'none' | 'cluster';

export interface BenchLimits {
  readonly mode: BenchLimitsMode;
  /** Undefined for `pod` (the edge's own default ledger). */
  readonly ledger: AdmissionLedger | undefined;
  readonly metrics: LimitMetrics | undefined;
  close(): Promise<void>;
}

function freeAdmission(kind: AdmissionKind, account: string | undefined): Admission {
  let released = false;
  return {
    kind: 'granted',
    lease: {
      kind,
      ...(account !== undefined ? { account } : {}),
      get released() {
        return released;
      },
      release() {
        if (released) return false;
        released = true;
        return true;
      },
    },
  };
}

/** Admits everything (case 7's baseline "no limits"). */
export const NO_LIMITS: AdmissionLedger = {
  acquire: (_snapshot, chain, kind) => freeAdmission(kind, chain.account),
  acquireAny: (_snapshot, chain, accounts, kind) => freeAdmission(kind, accounts[0] ?? chain.account),
  cool() {},
  inUse: () => 0,
  capacity: () => Number.POSITIVE_INFINITY,
};

/** The child's snapshot: the example policy, with the team cap when `--team-cap` is given. */
export function childSnapshot(): Promise<Snapshot> {
  const cap = arg('team-cap', '');
  return benchSnapshot(arg('upstream'), cap ? { teamCap: Number(cap) } : {});
}

/** Reads `--limits` (default `fallback`), and for `cluster` connects to the grant ledger and takes the first grants. */
export async function childLimits(snapshot: () => Snapshot | undefined, fallback: BenchLimitsMode): Promise<BenchLimits> {
  const mode = arg('limits', fallback);
  if (mode === 'pod') return { mode, ledger: undefined, metrics: undefined, close: async () => {} };
  if (mode === 'none') return { mode, ledger: NO_LIMITS, metrics: undefined, close: async () => {} };
  if (mode !== 'cluster') throw new Error(`--limits ${mode}: expected pod, none or cluster`);
  const logger = pino({ level: 'silent' });
  const limits = limitsComponent({ mode: 'cluster', natsUrl: arg('nats'), bucket: arg('bucket'), snapshot, logger });
  await limits.start();
  const metrics = limitMetrics(new Registry(), limits.ledger, () => snapshot()?.accounts.values() ?? []);
  return { mode, ledger: metrics.ledger, metrics, close: () => limits.close() };
}
