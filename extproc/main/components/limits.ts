/**
 * The pod's admission ledger and where its account grants come from: the whole account (`pod`,
 * one process) or leases from the cluster's grant ledger on NATS KV (`cluster`), which in
 * cluster mode also shares users' and teams' `max_units` and `max_sessions`. Started before
 * the edge listens, so the first requests find a grant; closed after it, giving the units back.
 */
import type { Logger } from 'pino';
import type { Snapshot } from '../../core/config/snapshot.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../core/limits/ledger.ts';
import { ClusterGrants, ledgerUsage, NatsKvGrantStore } from '../../adapters/nats/grant-ledger.ts';
import type { Component } from '../lifecycle.ts';

export type LimitsMode = 'auto' | 'cluster' | 'pod';

export interface LimitsComponent extends Component {
  readonly ledger: AdmissionLedger;
  /** `cluster` or `pod`, once resolved from `auto`. */
  readonly mode: 'cluster' | 'pod';
}

/** `auto`: cluster when NATS is configured, pod otherwise. Undefined when `cluster` has no NATS. */
export function resolveLimitsMode(mode: LimitsMode, natsUrl: string | undefined): 'cluster' | 'pod' | undefined {
  if (mode === 'pod') return 'pod';
  if (natsUrl) return 'cluster';
  return mode === 'auto' ? 'pod' : undefined;
}

export function limitsComponent(opts: { mode: 'cluster' | 'pod'; natsUrl?: string; bucket: string; snapshot: () => Snapshot | undefined; logger: Logger }): LimitsComponent {
  if (opts.mode === 'pod' || !opts.natsUrl) {
    return { name: 'limits', mode: 'pod', ledger: createAdmissionLedger(), start: async () => {}, drain() {}, close: async () => {} };
  }
  const natsUrl = opts.natsUrl;
  let grants: ClusterGrants | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  // The ledger exists before the grants (the edge is built with it); until `start` has connected
  // it admits nothing on any account (fail closed).
  const ledger = createAdmissionLedger({
    grants: {
      units: (a, pool) => grants?.units(a, pool) ?? 0,
      exhausted: (a, pool) => grants?.exhausted(a, pool),
      free: (a, pool) => grants?.free(a, pool),
      // Until connected a capped user or team has no share either (fail closed, like the accounts).
      share: (scope, name, resource, max) => grants?.share(scope, name, resource, max) ?? 0,
      shareExhausted: (scope, name, resource, max) => grants?.shareExhausted(scope, name, resource, max),
    },
  });
  return {
    name: 'grant ledger',
    mode: 'cluster',
    ledger,
    async start() {
      // Not awaited past the first attempt: a pod that starts while NATS is away must still come
      // up (spans spool, /readyz answers), admitting nothing on any account until it holds a grant.
      const connectOnce = async (): Promise<void> => {
        const store = await NatsKvGrantStore.connect(natsUrl, opts.bucket);
        if (closed) return void (await store.close());
        const g = new ClusterGrants({ store, logger: opts.logger });
        g.bind(
          ledgerUsage((scope, name, resource) => ledger.inUse(scope, name, resource)),
          (scope, name, resource) => ledger.inUse(scope, name, resource),
        );
        const snapshot = opts.snapshot();
        await g.start(snapshot?.accounts.values() ?? [], snapshot?.principalLimits);
        grants = g;
      };
      const retry = (err: unknown): void => {
        if (closed) return;
        opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'grant ledger not reachable: admitting nothing on any account until it is; retrying');
        retryTimer = setTimeout(() => void connectOnce().catch(retry), 1_000);
        retryTimer.unref();
      };
      await connectOnce().catch(retry);
    },
    drain() {},
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await grants?.close();
    },
  };
}
