/**
 * The admission ledger of one pod: counts what is in flight per user, team and account, and admits
 * an exchange only when every limit on its chain has room — all of them taken together or none.
 * Pure and synchronous (JavaScript runs one acquire at a time, so check-then-take is atomic), with
 * no I/O on the hot path.
 *
 * Accounts are admitted against the units *granted to this pod* ({@link GrantSource}). In
 * single-pod mode the grant is the whole account ({@link WHOLE_ACCOUNT}); across pods the grant is
 * leased from a shared ledger (adapters/nats/grant-ledger.ts, arithmetic in grants.ts) and refilled
 * in the background, so admission stays local. Across pods a user's or team's `max_units` and
 * `max_sessions` are shared the same way: this pod admits the principal within its granted share
 * of the cap ({@link GrantSource.share}); without a share the whole cap is this pod's.
 *
 * @example
 * const ledger = createAdmissionLedger();
 * const a = ledger.acquire(snapshot, { user: 'alice', teams: ['voice'], account: 'smallest-tts' }, 'tts-request');
 * if (a.kind === 'granted') try { … } finally { a.lease.release(); }
 */
import type { AccountConfig, PrincipalLimits, Snapshot } from '../config/snapshot.ts';
import { KIND_COST, type AccountPool, type AdmissionKind, type Chain } from './kinds.ts';
import { SlidingWindow } from './window.ts';
import { COOL_DOWN_MS, rankAccounts, type AccountStanding } from './choice.ts';

export type LimitScope = 'user' | 'team' | 'account';

/** Which limit refused: the user's or team's fields of the config, or the account's pools. */
export type LimitName = 'max_units' | 'max_sessions' | 'requests_per_minute' | 'concurrency' | 'ws_connections';

/** A counted resource: a principal's units or sessions, or one of an account's pools. */
export type Resource = 'units' | 'sessions' | AccountPool;

export interface Refusal {
  readonly kind: 'refused';
  readonly scope: LimitScope;
  /** The user, team or account whose limit is full. */
  readonly name: string;
  readonly limit: LimitName;
  /** The limit in force (what the caller may have at once, or per minute). */
  readonly max: number;
  /** When trying again may succeed: exact for requests per minute, a hint for concurrency. */
  readonly retryAfterMs: number;
}

/** What an admission holds; `release` gives it back once, later calls do nothing. */
export interface Lease {
  readonly kind: AdmissionKind;
  /** The account whose units it holds (the chosen one, with {@link AdmissionLedger.acquireAny}). */
  readonly account?: string;
  readonly released: boolean;
  /** Returns true the one time it released something. */
  release(): boolean;
}

export type Admission = { readonly kind: 'granted'; readonly lease: Lease } | Refusal;

/** An account's two pools of units as the provider counts them (TTS sockets scale with `tts`). */
export type GrantPool = 'tts' | 'stt';

/** What a user's or team's cap counts: `max_units` or `max_sessions`. */
export type PrincipalResource = 'units' | 'sessions';

/**
 * The units of an account this pod may admit against. `units` is on the hot path and must answer
 * from memory; a cross-pod source refills its grant asynchronously when told the grant ran out.
 */
export interface GrantSource {
  units(account: AccountConfig, pool: GrantPool): number;
  /** An admission was refused because this pod's grant of the pool is used up (start a borrow; never block). */
  exhausted?(account: AccountConfig, pool: GrantPool): void;
  /** Units of the pool no pod holds in the cluster, as last read; undefined when unknown (single pod). */
  free?(account: AccountConfig, pool: GrantPool): number | undefined;
  /**
   * This pod's share of a user's or team's cap `max` across pods, from memory (cluster mode).
   * Absent: the whole cap is this pod's (single pod).
   */
  share?(scope: 'user' | 'team', name: string, resource: PrincipalResource, max: number): number;
  /** Refused on this pod's share while the cap is larger: start a borrow of the principal's units (never block). */
  shareExhausted?(scope: 'user' | 'team', name: string, resource: PrincipalResource, max: number): void;
}

/** Single-pod mode: this pod is granted the whole account. */
export const WHOLE_ACCOUNT: GrantSource = { units: (a) => a.concurrency };

/**
 * Units are released when a synthesis ends, which on the provider takes about a second of audio
 * per 16 characters; a second is the honest order of magnitude to tell a client.
 */
export const CONCURRENCY_RETRY_AFTER_MS = 1000;

export interface LedgerOptions {
  readonly grants?: GrantSource;
  readonly now?: () => number;
  readonly concurrencyRetryAfterMs?: number;
}

export interface AdmissionLedger {
  /** Admits one exchange of `kind` for `chain` under the limits of `snapshot`, or says which limit is full. */
  acquire(snapshot: Snapshot, chain: Chain, kind: AdmissionKind): Admission;
  /**
   * Admits on one of `accounts` (the model's accounts the caller may use), trying them best first
   * (core/limits/choice.ts); the granted lease names the account. A user or team limit refuses at
   * once (no other account would change it); when every account is full, the best one's refusal.
   */
  acquireAny(snapshot: Snapshot, chain: Chain, accounts: readonly string[], kind: AdmissionKind): Admission;
  /** Passes `account` over for `ms` (a provider 429), unless it is the only candidate left. */
  cool(account: string, ms?: number): void;
  /** What is held now (tests, metrics). */
  inUse(scope: LimitScope, name: string, resource: Resource): number;
  /** What this pod may hold of an account's pool: its grant (TTS sockets: × `ws_per_unit`). Metrics. */
  capacity(account: AccountConfig, pool: AccountPool): number;
  /**
   * Calls `listener` after every release, so the edge's bounded waits (core/limits/waiters.ts) look
   * again at once; returns the unsubscribe. Wrappers forward it.
   */
  onRelease?(listener: () => void): () => void;
  /**
   * Metrics hooks of a wrapping ledger (adapters/prometheus/limit-metrics.ts), absent on a bare one.
   * `uncounted`: the ledger without refusal counting, for admissions a bounded wait retries (not
   * refusals a client saw); `refused`: one a client did see, after admitting `uncounted`;
   * `waited`: how a bounded wait ended and after how long.
   */
  uncounted?(): AdmissionLedger;
  refused?(r: Refusal): void;
  waited?(outcome: WaitOutcome, ms: number): void;
}

/** How a bounded wait ended (core/limits/waiters.ts; the `outcome` of `voicegate_limit_wait_seconds`). */
export type WaitOutcome = 'admitted' | 'timed_out' | 'cancelled';

interface Counter {
  n: number;
}

interface Check {
  readonly counter: Counter;
  readonly max: number;
  readonly scope: LimitScope;
  readonly name: string;
  readonly limit: LimitName;
  /** A user's or team's configured cap, when `max` is this pod's share of it (cluster mode). */
  readonly cap?: number;
}

interface RateCheck {
  readonly window: SlidingWindow;
  readonly scope: LimitScope;
  readonly name: string;
}

const key = (scope: LimitScope, name: string, what: string): string => `${scope}\u0000${name}\u0000${what}`;

export function createAdmissionLedger(opts: LedgerOptions = {}): AdmissionLedger {
  const grants = opts.grants ?? WHOLE_ACCOUNT;
  const now = opts.now ?? Date.now;
  const concurrencyRetry = opts.concurrencyRetryAfterMs ?? CONCURRENCY_RETRY_AFTER_MS;
  const counters = new Map<string, Counter>();
  const windows = new Map<string, SlidingWindow>();
  /** Account → sequence number of its last admission, for least-recently-chosen ties. */
  const chosen = new Map<string, number>();
  const cooling = new Map<string, number>();
  const releaseListeners = new Set<() => void>();
  let sequence = 0;

  const counter = (scope: LimitScope, name: string, resource: Resource): Counter => {
    const k = key(scope, name, resource);
    let c = counters.get(k);
    if (!c) counters.set(k, (c = { n: 0 }));
    return c;
  };
  const window = (scope: LimitScope, name: string, limit: number): SlidingWindow => {
    const k = key(scope, name, 'rpm');
    let w = windows.get(k);
    if (!w) windows.set(k, (w = new SlidingWindow(limit)));
    else w.resize(limit);
    return w;
  };

  function principal(checks: Check[], rates: RateCheck[], scope: 'user' | 'team', name: string, l: PrincipalLimits, kind: AdmissionKind): void {
    const cost = KIND_COST[kind];
    // Across pods the check is against this pod's share of the cap, the refusal names the cap.
    const shared = (resource: PrincipalResource, cap: number) =>
      grants.share ? { max: Math.min(cap, grants.share(scope, name, resource, cap)), cap } : { max: cap };
    if (cost.units && l.maxUnits !== undefined) {
      checks.push({ counter: counter(scope, name, 'units'), ...shared('units', l.maxUnits), scope, name, limit: 'max_units' });
    }
    if (cost.sessions && l.maxSessions !== undefined) {
      checks.push({ counter: counter(scope, name, 'sessions'), ...shared('sessions', l.maxSessions), scope, name, limit: 'max_sessions' });
    }
    if (l.requestsPerMinute !== undefined) rates.push({ window: window(scope, name, l.requestsPerMinute), scope, name });
  }

  /** The account's checks, or a refusal when the account is not in this pod's snapshot. */
  function account(checks: Check[], snapshot: Snapshot, name: string, pool: AccountPool): Refusal | undefined {
    const a = snapshot.accounts.get(name);
    // An allow for an account this pod does not know (a remote decision on a newer config): its
    // units are unknown, so nothing is admitted against it (fail closed).
    if (!a) return { kind: 'refused', scope: 'account', name, limit: 'concurrency', max: 0, retryAfterMs: concurrencyRetry };
    const max =
      pool === 'ws_slots' ? grants.units(a, 'tts') * a.wsPerUnit : grants.units(a, pool === 'tts_units' ? 'tts' : 'stt');
    checks.push({ counter: counter('account', name, pool), max, scope: 'account', name, limit: pool === 'ws_slots' ? 'ws_connections' : 'concurrency' });
    return undefined;
  }

  /** The standing of a candidate on the pool `kind` draws from (kinds without a pool: ties, LRU). */
  function standing(snapshot: Snapshot, name: string, kind: AdmissionKind): AccountStanding {
    const base = { account: name, lastChosen: chosen.get(name) ?? 0, coolingUntil: cooling.get(name) ?? 0 };
    const a = snapshot.accounts.get(name);
    const pool = KIND_COST[kind].account;
    if (!a || !pool) return { ...base, spare: 0 };
    const grantPool: GrantPool = pool === 'stt_units' ? 'stt' : 'tts';
    const scale = pool === 'ws_slots' ? a.wsPerUnit : 1;
    const spare = grants.units(a, grantPool) * scale - (counters.get(key('account', name, pool))?.n ?? 0);
    const free = grants.free?.(a, grantPool);
    return { ...base, spare, ...(free !== undefined ? { clusterFree: free * scale } : {}) };
  }

  /** `signal`: tell the grant source when this pod's grant ran out (acquireAny does it once, for the best account). */
  function acquire(snapshot: Snapshot, chain: Chain, kind: AdmissionKind, signal = true): Admission {
    const checks: Check[] = [];
    const rates: RateCheck[] = [];
    const table = snapshot.principalLimits;
    // Narrowest first, so a refusal names the limit the caller can do something about.
    if (table && chain.user !== undefined) {
      const l = table.users.get(chain.user);
      if (l) principal(checks, rates, 'user', chain.user, l, kind);
    }
    if (table && chain.teams.length > 0) {
      for (const team of new Set(chain.teams)) {
        const l = table.teams.get(team);
        if (l) principal(checks, rates, 'team', team, l, kind);
      }
    }
    const pool = KIND_COST[kind].account;
    if (pool && chain.account !== undefined) {
      const unknown = account(checks, snapshot, chain.account, pool);
      if (unknown) return unknown;
    }

    const t = now();
    for (const c of checks) {
      if (c.counter.n >= c.max) {
        if (signal && c.scope === 'account' && grants.exhausted) {
          const a = snapshot.accounts.get(c.name);
          if (a) grants.exhausted(a, pool === 'stt_units' ? 'stt' : 'tts');
        }
        // A principal's share is the same whichever account is tried, so this signals regardless of `signal`.
        if (c.scope !== 'account' && c.cap !== undefined && c.max < c.cap) {
          grants.shareExhausted?.(c.scope, c.name, c.limit === 'max_sessions' ? 'sessions' : 'units', c.cap);
        }
        return { kind: 'refused', scope: c.scope, name: c.name, limit: c.limit, max: c.cap ?? c.max, retryAfterMs: concurrencyRetry };
      }
    }
    for (const r of rates) {
      const wait = r.window.waitMs(t);
      if (wait > 0) {
        return { kind: 'refused', scope: r.scope, name: r.name, limit: 'requests_per_minute', max: r.window.limit, retryAfterMs: wait };
      }
    }
    // Everything fits: take it all (no await between the checks above and here).
    const held: Counter[] = checks.map((c) => c.counter);
    for (const c of held) c.n++;
    for (const r of rates) r.window.take(t);
    let released = false;
    if (chain.account !== undefined) chosen.set(chain.account, ++sequence);
    return {
      kind: 'granted',
      lease: {
        kind,
        ...(chain.account !== undefined ? { account: chain.account } : {}),
        get released() {
          return released;
        },
        release() {
          if (released) return false;
          released = true;
          for (const c of held) c.n--;
          // After the counters: a listener that admits a waiter finds the freed unit.
          for (const listener of releaseListeners) listener();
          return true;
        },
      },
    };
  }

  return {
    acquire: (snapshot, chain, kind) => acquire(snapshot, chain, kind),
    acquireAny(snapshot, chain, accounts, kind) {
      const unique = [...new Set(accounts)];
      if (unique.length <= 1) return acquire(snapshot, { ...chain, ...(unique[0] !== undefined ? { account: unique[0] } : {}) }, kind);
      const t = now();
      for (const [name, until] of cooling) if (until <= t) cooling.delete(name);
      const order = rankAccounts(unique.map((name) => standing(snapshot, name, kind)), t);
      let first: Refusal | undefined;
      for (const name of order) {
        const a = acquire(snapshot, { ...chain, account: name }, kind, false);
        if (a.kind === 'granted' || a.scope !== 'account') return a;
        first ??= a;
      }
      // Every account is full here: ask for more of the best one's units (one borrow, not one per account).
      const best = snapshot.accounts.get(order[0] ?? '');
      const pool = KIND_COST[kind].account;
      if (best && pool) grants.exhausted?.(best, pool === 'stt_units' ? 'stt' : 'tts');
      return first as Refusal;
    },
    cool(account, ms = COOL_DOWN_MS) {
      cooling.set(account, now() + ms);
    },
    inUse(scope, name, resource) {
      return counters.get(key(scope, name, resource))?.n ?? 0;
    },
    capacity(a, pool) {
      return pool === 'ws_slots' ? grants.units(a, 'tts') * a.wsPerUnit : grants.units(a, pool === 'tts_units' ? 'tts' : 'stt');
    },
    onRelease(listener) {
      releaseListeners.add(listener);
      return () => void releaseListeners.delete(listener);
    },
  };
}
