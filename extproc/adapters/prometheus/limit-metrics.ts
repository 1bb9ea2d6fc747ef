/**
 * The limits on the process's registry, fed by the edge and by Envoy's Check alike (both admit
 * through the ledger this wraps):
 *
 * - `voicegate_limit_units_in_use{account,pool}`: what this pod holds of each account's pools;
 * - `voicegate_limit_units_capacity{account,pool}`: what this pod may hold (its grant; the whole
 *   account in `--limits pod`);
 * - `voicegate_limit_rejections_total{limit}`: refusals by the scope of the full limit (user, team,
 *   account), syntheses refused on an open TTS socket included;
 * - `voicegate_limit_slot_releases_total{by}`: under Envoy, what released each slot Check took.
 *
 * `pool` is the ledger's: `tts_units`, `stt_units` (the provider counts them apart, `concurrency`
 * each) and `ws_slots` (TTS WebSockets, `concurrency × ws_per_unit`). Labels are accounts of the
 * configuration and fixed words only, never user or team names (cardinality). The gauges are read
 * from the ledger at scrape time, so admission pays nothing for them.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AccountConfig } from '../../core/config/snapshot.ts';
import type { AccountPool } from '../../core/limits/kinds.ts';
import type { Admission, AdmissionLedger } from '../../core/limits/ledger.ts';
import { SLOT_RELEASE_CAUSES, type SlotReleaseCause } from '../../core/limits/slots.ts';

const POOLS: readonly AccountPool[] = ['tts_units', 'stt_units', 'ws_slots'];

export interface LimitMetrics {
  /** The ledger to admit with: the one given, counting its refusals. */
  readonly ledger: AdmissionLedger;
  /** For the slot table's `onRelease`. */
  slotReleased(cause: SlotReleaseCause): void;
}

/** Registers the limit metrics of `ledger` over the accounts `accounts()` names at scrape time. */
export function limitMetrics(registry: Registry, ledger: AdmissionLedger, accounts: () => Iterable<AccountConfig>): LimitMetrics {
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
  for (const limit of ['user', 'team', 'account']) rejections.inc({ limit }, 0);
  for (const by of SLOT_RELEASE_CAUSES) releases.inc({ by }, 0);
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
    },
    slotReleased: (cause) => releases.inc({ by: cause }),
  };
}
