/**
 * The limits on the process's registry, fed by the edge and by Envoy's Check alike (both admit
 * through the ledger this wraps):
 *
 * - `voicegate_limit_units_in_use{account,pool}`: what this pod holds of each account's pools;
 * - `voicegate_limit_units_capacity{account,pool}`: what this pod may hold (its grant; the whole
 *   account in `--limits pod`);
 * - `voicegate_limit_rejections_total{limit}`: refusals by the scope of the full limit (user, team,
 *   account), syntheses refused on an open TTS socket included;
 * - `voicegate_limit_slot_releases_total{by}`: under Envoy, what released each slot Check took;
 * - `voicegate_limit_wait_seconds{outcome}`: how long bounded waits (a team's `wait`) lasted, by
 *   how they ended (`admitted`, `timed_out`, `cancelled`: the client left);
 * - `voicegate_limit_units_in_use_team{team}`: the units this pod holds of each team with a
 *   `max_units` in the configuration.
 *
 * `pool` is the ledger's: `tts_units`, `stt_units` (the provider counts them apart, `concurrency`
 * each) and `ws_slots` (TTS WebSockets, `concurrency × ws_per_unit`). Labels are accounts of the
 * configuration and fixed words only, never user names, and team names only of the teams the
 * configuration caps (an operator-written, bounded set; never a name a token brought). The gauges
 * are read from the ledger at scrape time, so admission pays nothing for them. A refusal a bounded
 * wait retries is not counted; the 429 the client finally gets is, once.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AccountConfig, PrincipalLimits } from '../../core/config/snapshot.ts';
import type { AccountPool } from '../../core/limits/kinds.ts';
import type { Admission, AdmissionLedger } from '../../core/limits/ledger.ts';
import { SLOT_RELEASE_CAUSES, type SlotReleaseCause } from '../../core/limits/slots.ts';
import { WAIT_OUTCOMES } from '../../core/limits/waiters.ts';

const POOLS: readonly AccountPool[] = ['tts_units', 'stt_units', 'ws_slots'];

export interface LimitMetrics {
  /** The ledger to admit with: the one given, counting its refusals. */
  readonly ledger: AdmissionLedger;
  /** For the slot table's `onRelease`. */
  slotReleased(cause: SlotReleaseCause): void;
}

/** Bounded waits last up to 30 s (config/schema.ts `wait.max_ms`). */
const WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Registers the limit metrics of `ledger` over the accounts `accounts()` names at scrape time, and
 * the teams `teams()` names (the snapshot's capped teams: `principalLimits.teams`).
 */
export function limitMetrics(
  registry: Registry,
  ledger: AdmissionLedger,
  accounts: () => Iterable<AccountConfig>,
  teams: () => Iterable<[string, PrincipalLimits]> = () => [],
): LimitMetrics {
  const each = (set: (labels: { account: string; pool: AccountPool }, value: number) => void, read: (a: AccountConfig, pool: AccountPool) => number): void => {
    for (const a of accounts()) for (const pool of POOLS) set({ account: a.name, pool }, read(a, pool));
  };
  new Gauge({
    name: 'voicegate_limit_units_in_use',
    help: "Units (and TTS WebSocket slots) this pod holds of each account's pools",
    labelNames: ['account', 'pool'] as const,
    registers: [registry],
    collect() {
      // Reset first: an account removed from the configuration leaves no stale series.
      this.reset();
      each((l, v) => this.set(l, v), (a, pool) => ledger.inUse('account', a.name, pool));
    },
  });
  new Gauge({
    name: 'voicegate_limit_units_capacity',
    help: "Units (and TTS WebSocket slots) of each account's pools this pod may hold: its grant",
    labelNames: ['account', 'pool'] as const,
    registers: [registry],
    collect() {
      this.reset();
      each((l, v) => this.set(l, v), (a, pool) => ledger.capacity(a, pool));
    },
  });
  const rejections = new Counter({
    name: 'voicegate_limit_rejections_total',
    help: 'Admissions refused by a limit, by the scope of the full limit (user, team, account)',
    labelNames: ['limit'] as const,
    registers: [registry],
  });
  const releases = new Counter({
    name: 'voicegate_limit_slot_releases_total',
    help: "Under Envoy: slots Check took, by what released them (stream, access_log, sweeper, check_cancelled, shutdown)",
    labelNames: ['by'] as const,
    registers: [registry],
  });
  const waits = new Histogram({
    name: 'voicegate_limit_wait_seconds',
    help: "Time spent in a team's bounded wait for a limit, by outcome (admitted, timed_out, cancelled)",
    labelNames: ['outcome'] as const,
    buckets: WAIT_BUCKETS,
    registers: [registry],
  });
  new Gauge({
    name: 'voicegate_limit_units_in_use_team',
    help: 'Units this pod holds of each team with max_units in the configuration',
    labelNames: ['team'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [team, l] of teams()) if (l.maxUnits !== undefined) this.set({ team }, ledger.inUse('team', team, 'units'));
    },
  });
  for (const limit of ['user', 'team', 'account']) rejections.inc({ limit }, 0);
  for (const by of SLOT_RELEASE_CAUSES) releases.inc({ by }, 0);
  for (const outcome of WAIT_OUTCOMES) waits.zero({ outcome });
  const counted = (a: Admission): Admission => {
    if (a.kind === 'refused') rejections.inc({ limit: a.scope });
    return a;
  };
  return {
    ledger: {
      acquire: (snapshot, chain, kind) => counted(ledger.acquire(snapshot, chain, kind)),
      acquireAny: (snapshot, chain, candidates, kind) => counted(ledger.acquireAny(snapshot, chain, candidates, kind)),
      cool: (account, ms) => ledger.cool(account, ms),
      inUse: (scope, name, resource) => ledger.inUse(scope, name, resource),
      capacity: (account, pool) => ledger.capacity(account, pool),
      ...(ledger.onRelease ? { onRelease: ledger.onRelease.bind(ledger) } : {}),
      // The inner ledger counts nothing: what a bounded wait retries.
      uncounted: () => ledger,
      refused: (r) => void rejections.inc({ limit: r.scope }),
      waited: (outcome, ms) => waits.observe({ outcome }, ms / 1000),
    },
    slotReleased: (cause) => releases.inc({ by: cause }),
  };
}
