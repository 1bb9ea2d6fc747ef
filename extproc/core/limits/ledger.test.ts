/**
 * The ledger's guarantees. fast-check is not installed in this repository, so the property tests
 * below drive the same idea by hand: many seeded random interleavings of acquire and release over
 * random limits, checking the invariants after every step (a failing seed is printed).
 */
import { describe, expect, it } from 'vitest';
import type { AccountConfig, PrincipalLimits, Snapshot } from '../config/snapshot.ts';
import { ADMISSION_KINDS, KIND_COST, type AdmissionKind, type Chain } from './kinds.ts';
import { createAdmissionLedger, type Lease, type Resource } from './ledger.ts';

function account(name: string, concurrency: number, wsPerUnit = 5): AccountConfig {
  return { name, provider: 'smallest', token: 'sk_test', users: new Set(), teams: new Set(), concurrency, wsPerUnit };
}

function snapshot(opts: {
  accounts?: AccountConfig[];
  users?: Record<string, PrincipalLimits>;
  teams?: Record<string, PrincipalLimits>;
}): Snapshot {
  return {
    version: 1,
    origin: 'test',
    issuers: [],
    providers: new Map(),
    accounts: new Map((opts.accounts ?? []).map((a) => [a.name, a])),
    models: new Map(),
    defaultModels: new Map(),
    maxDecisionBodyBytes: 65536,
    principalLimits: { users: new Map(Object.entries(opts.users ?? {})), teams: new Map(Object.entries(opts.teams ?? {})) },
  };
}

const alice: Chain = { user: 'alice', teams: ['voice'], account: 'acct' };
const bob: Chain = { user: 'bob', teams: ['voice'], account: 'acct' };

function granted(a: ReturnType<ReturnType<typeof createAdmissionLedger>['acquire']>): Lease {
  if (a.kind !== 'granted') throw new Error(`refused by ${a.scope} ${a.name} ${a.limit}`);
  return a.lease;
}

describe('createAdmissionLedger', () => {
  it('refuses the third unit of a user with max_units 2, naming the user, and admits again after a release', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 2 } } });
    const first = granted(ledger.acquire(s, alice, 'tts-request'));
    granted(ledger.acquire(s, alice, 'tts-request'));
    const third = ledger.acquire(s, alice, 'tts-request');
    expect(third).toMatchObject({ kind: 'refused', scope: 'user', name: 'alice', limit: 'max_units', max: 2, retryAfterMs: 1000 });
    // Another user is not affected by alice's cap.
    granted(ledger.acquire(s, bob, 'tts-request'));
    expect(first.release()).toBe(true);
    granted(ledger.acquire(s, alice, 'tts-request'));
    expect(ledger.inUse('user', 'alice', 'units')).toBe(2);
    expect(ledger.inUse('account', 'acct', 'tts_units')).toBe(3);
  });

  it('takes every limit on the chain or none: a full team leaves the user and the account untouched', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 5 } }, teams: { voice: { maxUnits: 1 } } });
    granted(ledger.acquire(s, bob, 'tts-request'));
    const refused = ledger.acquire(s, alice, 'tts-request');
    expect(refused).toMatchObject({ kind: 'refused', scope: 'team', name: 'voice', limit: 'max_units' });
    expect(ledger.inUse('user', 'alice', 'units')).toBe(0);
    expect(ledger.inUse('account', 'acct', 'tts_units')).toBe(1);
  });

  it('names the narrowest full limit: user before team before account', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 1)], users: { alice: { maxUnits: 1 } }, teams: { voice: { maxUnits: 1 } } });
    granted(ledger.acquire(s, alice, 'tts-request'));
    expect(ledger.acquire(s, alice, 'tts-request')).toMatchObject({ scope: 'user' });
    expect(ledger.acquire(s, bob, 'tts-request')).toMatchObject({ scope: 'team' });
    expect(ledger.acquire(s, { teams: [], account: 'acct' }, 'tts-request')).toMatchObject({ scope: 'account', limit: 'concurrency', max: 1 });
  });

  it('gives TTS sockets concurrency × ws_per_unit slots, and STT sockets their own pool of units', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 2, 3)] });
    const chain: Chain = { teams: [], account: 'acct' };
    for (let i = 0; i < 6; i++) granted(ledger.acquire(s, chain, 'tts-session'));
    expect(ledger.acquire(s, chain, 'tts-session')).toMatchObject({ kind: 'refused', scope: 'account', limit: 'ws_connections', max: 6 });
    // Sockets take no synthesis unit; their syntheses do.
    granted(ledger.acquire(s, chain, 'tts-synthesis'));
    granted(ledger.acquire(s, chain, 'tts-request'));
    expect(ledger.acquire(s, chain, 'tts-synthesis')).toMatchObject({ kind: 'refused', limit: 'concurrency', max: 2 });
    granted(ledger.acquire(s, chain, 'stt-session'));
    granted(ledger.acquire(s, chain, 'stt-session'));
    expect(ledger.acquire(s, chain, 'stt-session')).toMatchObject({ kind: 'refused', limit: 'concurrency' });
    // STT REST and voices take no account unit (the provider counts none for them).
    granted(ledger.acquire(s, chain, 'stt-request'));
    granted(ledger.acquire(s, chain, 'other'));
  });

  it('counts STT sessions against both max_units and max_sessions of a user', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 3, maxSessions: 1 } } });
    granted(ledger.acquire(s, alice, 'stt-session'));
    expect(ledger.acquire(s, alice, 'tts-session')).toMatchObject({ scope: 'user', limit: 'max_sessions' });
    granted(ledger.acquire(s, alice, 'tts-request'));
    granted(ledger.acquire(s, alice, 'stt-request'));
    expect(ledger.acquire(s, alice, 'tts-synthesis')).toMatchObject({ scope: 'user', limit: 'max_units', max: 3 });
  });

  it('admits against the units granted to this pod, not the whole account', () => {
    const ledger = createAdmissionLedger({ grants: { units: (a, pool) => (pool === 'tts' ? Math.floor(a.concurrency / 2) : 1) } });
    const s = snapshot({ accounts: [account('acct', 4, 5)] });
    const chain: Chain = { teams: [], account: 'acct' };
    granted(ledger.acquire(s, chain, 'tts-request'));
    granted(ledger.acquire(s, chain, 'tts-request'));
    expect(ledger.acquire(s, chain, 'tts-request')).toMatchObject({ kind: 'refused', max: 2 });
    for (let i = 0; i < 10; i++) granted(ledger.acquire(s, chain, 'tts-session'));
    expect(ledger.acquire(s, chain, 'tts-session')).toMatchObject({ kind: 'refused', max: 10 });
  });

  it('refuses an account this pod does not know (fail closed)', () => {
    const ledger = createAdmissionLedger();
    expect(ledger.acquire(snapshot({}), { teams: [], account: 'elsewhere' }, 'tts-request')).toMatchObject({
      kind: 'refused',
      scope: 'account',
      max: 0,
    });
  });

  it('releases exactly once: a second release returns false and gives nothing back', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 2)] });
    const chain: Chain = { teams: [], account: 'acct' };
    const a = granted(ledger.acquire(s, chain, 'tts-request'));
    granted(ledger.acquire(s, chain, 'tts-request'));
    expect(a.release()).toBe(true);
    expect(a.release()).toBe(false);
    expect(a.released).toBe(true);
    expect(ledger.inUse('account', 'acct', 'tts_units')).toBe(1);
  });

  it('counts requests per minute in a sliding window with an exact Retry-After, and never refunds them', () => {
    let t = 1_000_000;
    const ledger = createAdmissionLedger({ now: () => t });
    const s = snapshot({ accounts: [account('acct', 100)], teams: { voice: { requestsPerMinute: 3 } } });
    for (const dt of [0, 10_000, 20_000]) {
      t = 1_000_000 + dt;
      granted(ledger.acquire(s, alice, 'tts-request')).release();
    }
    t = 1_030_000;
    expect(ledger.acquire(s, bob, 'other')).toMatchObject({ kind: 'refused', scope: 'team', limit: 'requests_per_minute', max: 3, retryAfterMs: 30_000 });
    t = 1_060_000;
    granted(ledger.acquire(s, bob, 'other'));
    expect(ledger.acquire(s, bob, 'other')).toMatchObject({ kind: 'refused', retryAfterMs: 10_000 });
  });

  it('does not count a refused admission against requests per minute', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot({ accounts: [account('acct', 1)], users: { alice: { requestsPerMinute: 2 } } });
    const held = granted(ledger.acquire(s, alice, 'tts-request'));
    expect(ledger.acquire(s, alice, 'tts-request')).toMatchObject({ scope: 'account' });
    held.release();
    granted(ledger.acquire(s, alice, 'tts-request'));
  });

  it('keeps what was taken under an old snapshot and applies a lowered limit to new admissions', () => {
    const ledger = createAdmissionLedger();
    const before = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 3 } } });
    const after = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 1 } } });
    const leases = [0, 1, 2].map(() => granted(ledger.acquire(before, alice, 'tts-request')));
    expect(ledger.acquire(after, alice, 'tts-request')).toMatchObject({ kind: 'refused', max: 1 });
    leases[0]!.release();
    leases[1]!.release();
    expect(ledger.acquire(after, alice, 'tts-request')).toMatchObject({ kind: 'refused' });
    leases[2]!.release();
    granted(ledger.acquire(after, alice, 'tts-request'));
  });
});

/** mulberry32: a small seeded generator, so a failing interleaving can be replayed by its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('ledger properties over random interleavings', () => {
  const USERS = ['u1', 'u2', 'u3', 'u4'];
  const TEAMS = ['t1', 't2', 't3'];
  const ACCOUNTS = ['a1', 'a2'];

  it('never exceeds any limit, holds exactly what live leases took, and double releases change nothing', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
      const maybe = (p: number, v: () => number): number | undefined => (r() < p ? v() : undefined);
      const limits = (): PrincipalLimits => {
        const l = { maxUnits: maybe(0.7, () => 1 + Math.floor(r() * 4)), maxSessions: maybe(0.7, () => 1 + Math.floor(r() * 3)) };
        return Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)) as PrincipalLimits;
      };
      const users = Object.fromEntries(USERS.filter(() => r() < 0.7).map((u) => [u, limits()]));
      const teams = Object.fromEntries(TEAMS.filter(() => r() < 0.7).map((t) => [t, limits()]));
      const accounts = ACCOUNTS.map((a) => account(a, 1 + Math.floor(r() * 4), 1 + Math.floor(r() * 3)));
      const s = snapshot({ accounts, users, teams });
      const ledger = createAdmissionLedger();
      const live: Array<{ lease: Lease; chain: Chain; kind: AdmissionKind }> = [];
      const released: Lease[] = [];

      /** What the live leases must hold, recomputed from scratch. */
      const expected = (scope: 'user' | 'team' | 'account', name: string, resource: Resource): number =>
        live.filter(({ chain, kind }) => {
          const cost = KIND_COST[kind];
          if (scope === 'account') return chain.account === name && cost.account === resource;
          const on = scope === 'user' ? chain.user === name : chain.teams.includes(name);
          const limited = (scope === 'user' ? users : teams)[name];
          if (!on || !limited) return false;
          if (resource === 'units') return cost.units && limited.maxUnits !== undefined;
          if (resource === 'sessions') return cost.sessions && limited.maxSessions !== undefined;
          return false;
        }).length;

      // Plain comparisons (not expect) in the hot loop: 60,000 steps stay fast.
      const failures: string[] = [];
      const same = (where: string, got: number, want: number) => got !== want && failures.push(`${where}: holds ${got}, live leases took ${want}`);
      const within = (where: string, got: number, max: number | undefined) => max !== undefined && got > max && failures.push(`${where}: ${got} over ${max}`);
      const check = (step: number) => {
        const at = `seed ${seed}, step ${step}`;
        for (const [name, l] of Object.entries(users)) {
          same(`${at} user ${name} units`, ledger.inUse('user', name, 'units'), expected('user', name, 'units'));
          same(`${at} user ${name} sessions`, ledger.inUse('user', name, 'sessions'), expected('user', name, 'sessions'));
          within(`${at} user ${name} units`, ledger.inUse('user', name, 'units'), l.maxUnits);
          within(`${at} user ${name} sessions`, ledger.inUse('user', name, 'sessions'), l.maxSessions);
        }
        for (const [name, l] of Object.entries(teams)) {
          same(`${at} team ${name} units`, ledger.inUse('team', name, 'units'), expected('team', name, 'units'));
          same(`${at} team ${name} sessions`, ledger.inUse('team', name, 'sessions'), expected('team', name, 'sessions'));
          within(`${at} team ${name} units`, ledger.inUse('team', name, 'units'), l.maxUnits);
          within(`${at} team ${name} sessions`, ledger.inUse('team', name, 'sessions'), l.maxSessions);
        }
        for (const a of accounts) {
          for (const pool of ['tts_units', 'stt_units', 'ws_slots'] as const) {
            const max = pool === 'ws_slots' ? a.concurrency * a.wsPerUnit : a.concurrency;
            same(`${at} account ${a.name} ${pool}`, ledger.inUse('account', a.name, pool), expected('account', a.name, pool));
            within(`${at} account ${a.name} ${pool}`, ledger.inUse('account', a.name, pool), max);
          }
        }
        if (failures.length > 0) expect(failures).toEqual([]);
      };

      for (let step = 0; step < 200; step++) {
        const roll = r();
        if (roll < 0.55) {
          const chain: Chain = {
            user: pick(USERS),
            teams: TEAMS.filter(() => r() < 0.4),
            account: pick(ACCOUNTS),
          };
          const kind = pick(ADMISSION_KINDS);
          const a = ledger.acquire(s, chain, kind);
          if (a.kind === 'granted') live.push({ lease: a.lease, chain, kind });
        } else if (roll < 0.9 && live.length > 0) {
          const [gone] = live.splice(Math.floor(r() * live.length), 1);
          if (!gone!.lease.release()) failures.push(`seed ${seed}, step ${step}: first release returned false`);
          released.push(gone!.lease);
        } else if (released.length > 0) {
          // A release that arrives twice (end and abort racing) is a no-op.
          if (pick(released).release()) failures.push(`seed ${seed}, step ${step}: a second release released`);
        }
        check(step);
      }
      for (const { lease } of live.splice(0)) lease.release();
      check(-1);
      // Everything returned: every counter is back at zero.
      for (const a of accounts) for (const pool of ['tts_units', 'stt_units', 'ws_slots'] as const) same(`seed ${seed} end ${a.name}`, ledger.inUse('account', a.name, pool), 0);
      expect(failures).toEqual([]);
    }
  });
});
