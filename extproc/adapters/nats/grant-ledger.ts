/**
 * The cross-pod grant ledger (issue 12, point 4) on NATS KV: every pod admits against units
 * granted to it, leased from one bucket; the arithmetic is core/limits/grants.ts.
 *
 * Why NATS KV rather than a PostgreSQL row: every pod already holds a NATS connection (the span
 * stream), a KV compare-and-set is one round trip with no transaction or pool to hold, and the
 * entries are small and short-lived. The bucket has ONE replica: nats-server 2.9's compare-and-set
 * is not safe on replicated buckets (nats-server issue 4320 — a limit of 10 reached 108 with three
 * replicas). A PostgreSQL store fits the same {@link GrantStore} (`UPDATE … WHERE version = $rev`,
 * or `SELECT … FOR UPDATE` in a transaction).
 *
 * Hot path: {@link ClusterGrants.units} answers from memory. A request that finds the grant used
 * up is refused with 429 at once (it does not wait) and starts a background borrow, so the next
 * request finds the unit; every `heartbeatMs` each pool is settled: borrow the need plus headroom,
 * give back idle units (hysteresis), renew the lease and reclaim expired leases of dead pods.
 * Cut off from NATS, the pod keeps its grant until `lease end − margin` by its own clock, then
 * admits nothing until a write succeeds again.
 *
 * Users' and teams' `max_units` and `max_sessions` are pools too, of the cap's size: one entry per
 * (user|team, resource) that is configured, settled by the same policy (planSettle), so a team
 * with `max_units: 3` holds at most 3 units across every pod. `requests_per_minute` is not shared
 * (core/limits/window.ts counts it per pod): an exact window across pods would cost a round trip
 * per request.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { connect, type KV, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import type { AccountConfig, PrincipalLimitTable } from '../../core/config/snapshot.ts';
import {
  admissible,
  afterWrite,
  beforeWrite,
  decodeGrantEntry,
  DEFAULT_GRANT_POLICY,
  encodeGrantEntry,
  liveUnits,
  NO_GRANT,
  planSettle,
  type GrantEntry,
  type GrantPolicy,
  type GrantRead,
  type GrantStore,
  type LocalGrant,
} from '../../core/limits/grants.ts';
import type { GrantPool, GrantSource, PrincipalResource } from '../../core/limits/ledger.ts';

export const DEFAULT_GRANT_BUCKET = 'voicegate_grants';
/** A third of the lease: two heartbeats may be lost before the lease runs short. */
export const DEFAULT_GRANT_HEARTBEAT_MS = 1000;
/** KV operations give up after this, so a lost NATS is noticed long before the lease ends. */
const KV_TIMEOUT_MS = 500;
/** A burst of refusals starts at most one borrow per pool in this interval. */
const DEMAND_MIN_GAP_MS = 20;
/** Compare-and-set attempts per settle before waiting for the next heartbeat. */
const CAS_ATTEMPTS = 5;

/** The KV key of an account pool: account names may hold characters keys may not. */
export function grantKey(account: string, pool: GrantPool): string {
  return `${pool}.${Buffer.from(account, 'utf8').toString('base64url') || '_'}`;
}

/** The KV key of a user's or team's cap, e.g. `team_units.<name>`: apart from every account key. */
export function principalGrantKey(scope: 'user' | 'team', name: string, resource: PrincipalResource): string {
  return `${scope}_${resource}.${Buffer.from(name, 'utf8').toString('base64url') || '_'}`;
}

/** {@link GrantStore} on a NATS KV bucket (replicas 1, history 1). */
export class NatsKvGrantStore implements GrantStore {
  readonly #kv: KV;
  readonly #nc: NatsConnection | undefined;

  private constructor(kv: KV, nc: NatsConnection | undefined) {
    this.#kv = kv;
    this.#nc = nc;
  }

  /** Opens (or creates) `bucket` on `nc`; `owned`: close the connection with the store. */
  static async open(nc: NatsConnection, bucket: string, owned = false): Promise<NatsKvGrantStore> {
    const kv = await nc.jetstream({ timeout: KV_TIMEOUT_MS }).views.kv(bucket, { replicas: 1, history: 1, timeout: KV_TIMEOUT_MS });
    return new NatsKvGrantStore(kv, owned ? nc : undefined);
  }

  static async connect(servers: string | string[], bucket: string): Promise<NatsKvGrantStore> {
    // Reconnect forever: a pod cut off keeps serving within its grant and resumes when NATS returns.
    const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'voicegate-grants' });
    try {
      return await NatsKvGrantStore.open(nc, bucket, true);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  async read(key: string): Promise<GrantRead | undefined> {
    const e = await this.#kv.get(key);
    if (!e) return undefined;
    // A deleted or purged key reads as empty, at its revision (a create would fail on it).
    const entry: GrantEntry | undefined = e.operation === 'PUT' ? decodeGrantEntry(e.string()) : { grants: {} };
    if (!entry) throw new GrantLedgerError(`the grant entry ${key} does not parse`);
    return { entry, revision: e.revision };
  }

  async write(key: string, entry: GrantEntry, revision: number | undefined): Promise<boolean> {
    const data = new TextEncoder().encode(encodeGrantEntry(entry));
    try {
      if (revision === undefined) await this.#kv.create(key, data);
      else await this.#kv.update(key, data, revision);
      return true;
    } catch (err) {
      // JetStream's "wrong last sequence" (10071): another pod wrote first.
      if (isConflict(err)) return false;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#nc?.close();
  }
}

function isConflict(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: unknown };
  return e?.api_error?.err_code === 10071 || (typeof e?.message === 'string' && e.message.includes('wrong last sequence'));
}

export class GrantLedgerError extends Error {
  override name = 'GrantLedgerError';
}

export interface ClusterGrantsOptions {
  readonly store: GrantStore;
  /** This pod's name in the ledger (default: host name and a random suffix). */
  readonly podId?: string;
  readonly policy?: Partial<GrantPolicy>;
  readonly heartbeatMs?: number;
  readonly now?: () => number;
  readonly logger?: Logger;
}

/** What the pod has in use on a pool, read from the admission ledger. */
export type UsageReader = (account: AccountConfig, pool: GrantPool) => number;

/** What the pod holds of a user's or team's cap, read from the admission ledger. */
export type PrincipalUsageReader = (scope: 'user' | 'team', name: string, resource: PrincipalResource) => number;

/** What a pool of the ledger shares: an account's units, or a user's or team's cap. */
type Subject =
  | { readonly kind: 'account'; readonly account: AccountConfig; readonly pool: GrantPool }
  | { readonly kind: 'principal'; readonly scope: 'user' | 'team'; readonly name: string; readonly resource: PrincipalResource; readonly max: number };

interface PoolState {
  /** Replaced on every look-up, so a reload's new size counts from the next settle. */
  subject: Subject;
  readonly key: string;
  local: LocalGrant;
  demanded: boolean;
  lastDemand: number;
  /** The last refusal for lack of this pool's grant (every one, unlike `lastDemand`). */
  lastRefusal: number;
  settling: Promise<void> | undefined;
  again: boolean;
  /** Units no live lease held at the last successful settle (for choosing between accounts). */
  free: number | undefined;
}

/**
 * The {@link GrantSource} of one pod in a cluster. Bind it to the pod's admission ledger
 * ({@link ClusterGrants.bind}) so it knows what is in use, then {@link ClusterGrants.start}.
 *
 * @example
 * const grants = new ClusterGrants({ store: await NatsKvGrantStore.connect(url, 'voicegate_grants') });
 * const ledger = createAdmissionLedger({ grants });
 * grants.bind((a, pool) => pool === 'stt' ? ledger.inUse('account', a.name, 'stt_units') : …);
 * await grants.start(snapshot.accounts.values());
 */
export class ClusterGrants implements GrantSource {
  readonly podId: string;
  readonly #store: GrantStore;
  readonly #policy: GrantPolicy;
  readonly #heartbeatMs: number;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #pools = new Map<string, PoolState>();
  #usage: UsageReader = () => 0;
  #principalUsage: PrincipalUsageReader = () => 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failures = 0;

  constructor(opts: ClusterGrantsOptions) {
    this.#store = opts.store;
    this.podId = opts.podId ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
    this.#policy = { ...DEFAULT_GRANT_POLICY, ...opts.policy };
    this.#heartbeatMs = opts.heartbeatMs ?? DEFAULT_GRANT_HEARTBEAT_MS;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger;
  }

  bind(usage: UsageReader, principals?: PrincipalUsageReader): void {
    this.#usage = usage;
    if (principals) this.#principalUsage = principals;
  }

  /**
   * Borrows the first units of `accounts` and of the configured caps in `principals` (awaited,
   * bounded by the KV timeout) and starts the heartbeat. Pools met later (a reload) are settled
   * on first use: that first admission is refused and borrows, as on an exhausted grant.
   */
  async start(accounts: Iterable<AccountConfig>, principals?: PrincipalLimitTable): Promise<void> {
    const first: Promise<void>[] = [];
    for (const a of accounts) for (const pool of ['tts', 'stt'] as const) first.push(this.#settle(this.#state(a, pool)));
    for (const [scope, table] of [['user', principals?.users], ['team', principals?.teams]] as const) {
      for (const [name, l] of table ?? []) {
        if (l.maxUnits !== undefined) first.push(this.#settle(this.#principalState(scope, name, 'units', l.maxUnits)));
        if (l.maxSessions !== undefined) first.push(this.#settle(this.#principalState(scope, name, 'sessions', l.maxSessions)));
      }
    }
    await Promise.all(first);
    this.#timer = setInterval(() => this.heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  units(account: AccountConfig, pool: GrantPool): number {
    const st = this.#state(account, pool);
    // Never more than the account has now (a reload may have lowered it).
    return Math.min(admissible(st.local, this.#now()), account.concurrency);
  }

  exhausted(account: AccountConfig, pool: GrantPool): void {
    this.#demand(this.#state(account, pool));
  }

  #demand(st: PoolState): void {
    st.demanded = true;
    const t = this.#now();
    st.lastRefusal = t;
    if (t - st.lastDemand < DEMAND_MIN_GAP_MS) return;
    st.lastDemand = t;
    void this.#settle(st);
  }

  share(scope: 'user' | 'team', name: string, resource: PrincipalResource, max: number): number {
    const st = this.#principalState(scope, name, resource, max);
    return Math.min(admissible(st.local, this.#now()), max);
  }

  shareExhausted(scope: 'user' | 'team', name: string, resource: PrincipalResource, max: number): void {
    this.#demand(this.#principalState(scope, name, resource, max));
  }

  /** Unleased units of the pool at the last settle; a hint for choosing an account, never admitted against. */
  free(account: AccountConfig, pool: GrantPool): number | undefined {
    return this.#pools.get(grantKey(account.name, pool))?.free;
  }

  /** Settles every pool once (what the timer does). */
  heartbeat(): Promise<void> {
    return Promise.all([...this.#pools.values()].map((st) => this.#settle(st))).then(() => undefined);
  }

  /** Stops the heartbeat and gives every unit back (shutdown). */
  async close(): Promise<void> {
    this.#stop();
    await Promise.all([...this.#pools.values()].map((st) => st.settling));
    // With nothing in use the settle records no grant for this pod: every unit is free at once.
    this.#stopped = false;
    await Promise.all([...this.#pools.values()].map((st) => this.#settle(st, true)));
    this.#stopped = true;
    await this.#store.close();
  }

  /** Stops heartbeats without giving anything back: what a killed pod leaves behind (tests). */
  async abandon(): Promise<void> {
    this.#stop();
    await this.#store.close();
  }

  #stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  // On the hot path: an unchanged subject is not replaced (no allocation per admission).
  #state(account: AccountConfig, pool: GrantPool): PoolState {
    const key = grantKey(account.name, pool);
    const st = this.#pools.get(key);
    if (st?.subject.kind === 'account' && st.subject.account === account) return st;
    return this.#pool(key, { kind: 'account', account, pool });
  }

  #principalState(scope: 'user' | 'team', name: string, resource: PrincipalResource, max: number): PoolState {
    const key = principalGrantKey(scope, name, resource);
    const st = this.#pools.get(key);
    if (st?.subject.kind === 'principal' && st.subject.max === max) return st;
    return this.#pool(key, { kind: 'principal', scope, name, resource, max });
  }

  #pool(key: string, subject: Subject): PoolState {
    let st = this.#pools.get(key);
    if (!st) {
      st = { subject, key, local: NO_GRANT, demanded: false, lastDemand: -Infinity, lastRefusal: -Infinity, settling: undefined, again: false, free: undefined };
      this.#pools.set(key, st);
      if (this.#timer) void this.#settle(st);
    } else {
      st.subject = subject;
    }
    return st;
  }

  /** One settle at a time per pool; a request for another while one runs makes it run once more. */
  #settle(st: PoolState, release = false): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (st.settling) {
      st.again = true;
      return st.settling;
    }
    st.settling = (async () => {
      try {
        do {
          st.again = false;
          await this.#settleOnce(st, release);
        } while (st.again && !this.#stopped);
      } finally {
        st.settling = undefined;
      }
    })();
    return st.settling;
  }

  async #settleOnce(st: PoolState, release: boolean): Promise<void> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      try {
        const read = await this.#store.read(st.key);
        const now = this.#now();
        const need = this.#need(st);
        const plan = planSettle(read?.entry, this.podId, {
          ...(release ? { ...this.#policy, headroom: 0, slack: 0 } : this.#policy),
          total: total(st.subject),
          need,
          held: st.local.units,
          // A pod refused within the last two heartbeats still waits: its want stays in the entry
          // until the others' next settles have seen it (the policy counts no headroom as a want).
          demanded: (st.demanded || now - st.lastRefusal < 2 * this.#heartbeatMs) && !release,
          now,
        });
        // Lower first: nothing admitted during the write may exceed what the write records.
        st.local = beforeWrite(st.local, plan);
        const ok = await this.#store.write(st.key, plan.entry, read?.revision);
        st.local = afterWrite(st.local, plan, ok, this.#policy.marginMs);
        if (ok) {
          st.free = Math.max(0, total(st.subject) - liveUnits(plan.entry, now));
          st.demanded = false;
          if (this.#failures > 0) this.#log?.info({ pool: st.key }, 'grant ledger reachable again');
          this.#failures = 0;
          return;
        }
      } catch (err) {
        // Keep the grant (it still counts until lease end − margin); report once per outage.
        if (this.#failures++ === 0) this.#log?.warn({ err: err instanceof Error ? err.message : String(err), pool: st.key }, 'grant ledger unreachable: admitting within the current grant until its lease runs out');
        return;
      }
    }
  }

  #need(st: PoolState): number {
    const s = st.subject;
    return s.kind === 'account' ? this.#usage(s.account, s.pool) : this.#principalUsage(s.scope, s.name, s.resource);
  }
}

/** The size of a pool: the account's units, or the user's or team's cap. */
const total = (s: Subject): number => (s.kind === 'account' ? s.account.concurrency : s.max);

/** What the admission ledger has in use on a pool: TTS sockets need one unit per `ws_per_unit` of them. */
export function ledgerUsage(inUse: (scope: 'account', name: string, resource: 'tts_units' | 'stt_units' | 'ws_slots') => number): UsageReader {
  return (a, pool) =>
    pool === 'stt'
      ? inUse('account', a.name, 'stt_units')
      : Math.max(inUse('account', a.name, 'tts_units'), Math.ceil(inUse('account', a.name, 'ws_slots') / Math.max(1, a.wsPerUnit)));
}
