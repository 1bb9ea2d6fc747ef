/**
 * The bounded wait queue over the real ledger: FIFO within a team, round-robin across teams, the
 * queue's bound, deadlines and cancellation — and, over seeded random interleavings (fast-check is
 * not installed; a failing seed is printed), that waiting never admits beyond a limit, that a
 * cancelled or timed-out waiter holds nothing and is never tried again, that freed units go
 * round-robin across teams, and that no waiter starves.
 */
import { describe, expect, it } from 'vitest';
import type { AccountConfig, PrincipalLimits, Snapshot } from '../config/snapshot.ts';
import type { Chain } from './kinds.ts';
import { createAdmissionLedger, type AdmissionLedger, type Lease, type Refusal } from './ledger.ts';
import { waitable, waitingTeam, WaitQueue, type WaitEnd, type WaitPolicy } from './waiters.ts';

function account(name: string, concurrency: number): AccountConfig {
  return { name, provider: 'smallest', token: 'sk_test', users: new Set(), teams: new Set(), concurrency, wsPerUnit: 5 };
}

function snapshot(opts: { accounts: AccountConfig[]; users?: Record<string, PrincipalLimits>; teams?: Record<string, PrincipalLimits> }): Snapshot {
  return {
    version: 1,
    origin: 'test',
    issuers: [],
    providers: new Map(),
    accounts: new Map(opts.accounts.map((a) => [a.name, a])),
    models: new Map(),
    defaultModels: new Map(),
    maxDecisionBodyBytes: 65536,
    principalLimits: { users: new Map(Object.entries(opts.users ?? {})), teams: new Map(Object.entries(opts.teams ?? {})) },
  };
}

const POLICY: WaitPolicy = { maxMs: 1000, maxWaiters: 10 };

/** A test harness: a ledger, a queue on a virtual clock woken by the ledger's releases. */
function harness(s: Snapshot, ledger: AdmissionLedger = createAdmissionLedger()) {
  let t = 0;
  const queue = new WaitQueue<Lease>({ now: () => t });
  ledger.onRelease?.(() => queue.pump());
  const ends: Array<{ who: string; end: WaitEnd<Lease> }> = [];
  const attempt = (chain: Chain) => () => {
    const a = ledger.acquire(s, chain, 'tts-request');
    return a.kind === 'granted' ? a.lease : undefined;
  };
  return {
    ledger,
    queue,
    ends,
    advance: (ms: number) => (t += ms),
    hold: (chain: Chain): Lease => {
      const a = ledger.acquire(s, chain, 'tts-request');
      if (a.kind !== 'granted') throw new Error(`refused by ${a.scope} ${a.name}`);
      return a.lease;
    },
    wait: (who: string, team: string, chain: Chain, policy = POLICY) =>
      queue.enqueue(team, policy, attempt(chain), (end) => ends.push({ who, end })),
    admitted: () => ends.filter((e) => e.end.outcome === 'admitted').map((e) => e.who),
    leaseOf: (who: string): Lease => {
      const e = ends.find((x) => x.who === who);
      if (e?.end.outcome !== 'admitted') throw new Error(`${who} was not admitted`);
      return e.end.value;
    },
  };
}

const on = (user: string, team: string): Chain => ({ user, teams: [team], account: 'acct' });

describe('WaitQueue', () => {
  it('serves a team in arrival order as units free, and records how long each waited', () => {
    const s = snapshot({ accounts: [account('acct', 10)], teams: { voice: { maxUnits: 1 } } });
    const h = harness(s);
    const first = h.hold(on('a', 'voice'));
    h.wait('w1', 'voice', on('b', 'voice'));
    h.advance(10);
    h.wait('w2', 'voice', on('c', 'voice'));
    expect(h.queue.pump()).toBe(0);
    h.advance(90);
    first.release();
    expect(h.admitted()).toEqual(['w1']);
    expect(h.ends[0]!.end.waitedMs).toBe(100);
    h.leaseOf('w1').release();
    expect(h.admitted()).toEqual(['w1', 'w2']);
    expect(h.ledger.inUse('team', 'voice', 'units')).toBe(1);
    expect(h.queue.size).toBe(0);
  });

  it('serves two teams waiting on one account unit alternately, whichever queued more', () => {
    const s = snapshot({ accounts: [account('acct', 1)] });
    const h = harness(s);
    let held = h.hold(on('x', 'other'));
    for (const w of ['a1', 'a2', 'a3']) h.wait(w, 'a', on(w, 'a'));
    for (const w of ['b1', 'b2']) h.wait(w, 'b', on(w, 'b'));
    for (let i = 0; i < 5; i++) {
      held.release();
      held = h.leaseOf(h.admitted().at(-1)!);
    }
    expect(h.admitted()).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
    expect(h.ledger.inUse('account', 'acct', 'tts_units')).toBe(1);
  });

  it('takes at most max_waiters per team, without bounding other teams', () => {
    const s = snapshot({ accounts: [account('acct', 1)] });
    const h = harness(s);
    h.hold(on('x', 'other'));
    const two: WaitPolicy = { maxMs: 1000, maxWaiters: 2 };
    expect(h.wait('a1', 'a', on('a1', 'a'), two)).toBeDefined();
    expect(h.wait('a2', 'a', on('a2', 'a'), two)).toBeDefined();
    expect(h.wait('a3', 'a', on('a3', 'a'), two)).toBeUndefined();
    expect(h.wait('b1', 'b', on('b1', 'b'), two)).toBeDefined();
    expect(h.queue.sizeOf('a')).toBe(2);
    expect(h.queue.size).toBe(3);
    expect(h.ends).toEqual([]);
  });

  it('times a waiter out at its deadline and never tries it again', () => {
    const s = snapshot({ accounts: [account('acct', 1)] });
    const h = harness(s);
    const held = h.hold(on('x', 'other'));
    h.wait('w', 'a', on('w', 'a'), { maxMs: 500, maxWaiters: 1 });
    expect(h.queue.nextDeadline()).toBe(500);
    h.advance(499);
    expect(h.queue.expire()).toBe(0);
    h.advance(1);
    expect(h.queue.expire()).toBe(1);
    expect(h.ends).toEqual([{ who: 'w', end: { outcome: 'timed_out', waitedMs: 500 } }]);
    held.release();
    expect(h.ledger.inUse('account', 'acct', 'tts_units')).toBe(0);
    expect(h.queue.nextDeadline()).toBeUndefined();
  });

  it('lets a cancelled waiter leave holding nothing, its place free for the next', () => {
    const s = snapshot({ accounts: [account('acct', 1)] });
    const h = harness(s);
    const held = h.hold(on('x', 'other'));
    const one: WaitPolicy = { maxMs: 1000, maxWaiters: 1 };
    const ticket = h.wait('w1', 'a', on('w1', 'a'), one)!;
    expect(h.wait('w2', 'a', on('w2', 'a'), one)).toBeUndefined();
    h.advance(30);
    expect(h.queue.cancel(ticket)).toBe(true);
    expect(h.queue.cancel(ticket)).toBe(false);
    expect(h.wait('w3', 'a', on('w3', 'a'), one)).toBeDefined();
    held.release();
    expect(h.ends.map((e) => [e.who, e.end.outcome])).toEqual([
      ['w1', 'cancelled'],
      ['w3', 'admitted'],
    ]);
    expect(h.ledger.inUse('account', 'acct', 'tts_units')).toBe(1);
  });

  it("passes over a waiter whose own user cap is still full, for the team's next", () => {
    const s = snapshot({ accounts: [account('acct', 10)], users: { alice: { maxUnits: 1 } }, teams: { voice: { maxUnits: 2 } } });
    const h = harness(s);
    h.hold(on('alice', 'voice'));
    const bob = h.hold(on('bob', 'voice'));
    h.wait('alice-2', 'voice', on('alice', 'voice'));
    h.wait('carol', 'voice', on('carol', 'voice'));
    bob.release();
    expect(h.admitted()).toEqual(['carol']);
    expect(h.queue.sizeOf('voice')).toBe(1);
  });

  it('folds a release made while admitting (a settle that ends at once) into the running pump', () => {
    const s = snapshot({ accounts: [account('acct', 1)] });
    const ledger = createAdmissionLedger();
    const queue = new WaitQueue<Lease>({ now: () => 0 });
    ledger.onRelease?.(() => queue.pump());
    const order: string[] = [];
    const attempt = (who: string) => () => {
      const a = ledger.acquire(s, on(who, 't'), 'tts-request');
      return a.kind === 'granted' ? a.lease : undefined;
    };
    const held = ledger.acquire(s, on('x', 't'), 'tts-request');
    // The first waiter's client is already gone: its exchange ends (and releases) as it is admitted.
    queue.enqueue('a', POLICY, attempt('a'), (end) => {
      order.push('a');
      if (end.outcome === 'admitted') end.value.release();
    });
    queue.enqueue('b', POLICY, attempt('b'), () => order.push('b'));
    if (held.kind === 'granted') held.lease.release();
    expect(order).toEqual(['a', 'b']);
    expect(ledger.inUse('account', 'acct', 'tts_units')).toBe(1);
    expect(queue.size).toBe(0);
  });
});

describe('waitable and waitingTeam', () => {
  const refusal = (over: Partial<Refusal>): Refusal => ({ kind: 'refused', scope: 'team', name: 't', limit: 'max_units', max: 1, retryAfterMs: 1000, ...over });

  it('waits out concurrency limits only: not requests per minute, not an unknown account', () => {
    for (const limit of ['max_units', 'max_sessions', 'concurrency', 'ws_connections'] as const) expect(waitable(refusal({ limit }))).toBe(true);
    expect(waitable(refusal({ limit: 'requests_per_minute', max: 10 }))).toBe(false);
    expect(waitable(refusal({ scope: 'account', limit: 'concurrency', max: 0 }))).toBe(false);
  });

  it("picks the first of the chain's teams that configures a wait", () => {
    const wait = { maxMs: 2000, maxWaiters: 2 };
    const s = snapshot({ accounts: [], teams: { capped: { maxUnits: 1 }, patient: { wait }, other: { wait: { maxMs: 5, maxWaiters: 5 } } } });
    expect(waitingTeam(s, { teams: ['capped', 'patient', 'other'] })).toEqual({ team: 'patient', policy: wait });
    expect(waitingTeam(s, { teams: ['capped', 'unknown'] })).toBeUndefined();
    expect(waitingTeam(s, { teams: [] })).toBeUndefined();
  });
});

function rng(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let x = Math.imul(t ^ (t >>> 15), t | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe('wait queue properties over random interleavings', () => {
  const TEAMS = ['t1', 't2', 't3', 't4'];
  const USERS = ['u1', 'u2', 'u3', 'u4', 'u5'];

  it('never admits beyond a limit; cancelled and timed-out waiters hold nothing and are never tried again', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
      const teams = Object.fromEntries(
        TEAMS.map((team) => [
          team,
          {
            ...(r() < 0.6 ? { maxUnits: 1 + Math.floor(r() * 3) } : {}),
            wait: { maxMs: 50 + Math.floor(r() * 500), maxWaiters: 1 + Math.floor(r() * 4) },
          } satisfies PrincipalLimits,
        ]),
      );
      const users = Object.fromEntries(USERS.filter(() => r() < 0.5).map((u) => [u, { maxUnits: 1 + Math.floor(r() * 2) }]));
      const acct = account('acct', 1 + Math.floor(r() * 4));
      const s = snapshot({ accounts: [acct], users, teams });
      const ledger = createAdmissionLedger();
      let t = 0;
      const queue = new WaitQueue<Lease>({ now: () => t });
      ledger.onRelease?.(() => queue.pump());
      const live: Array<{ lease: Lease; chain: Chain }> = [];
      const waiting: Array<{ ticket: NonNullable<ReturnType<typeof queue.enqueue>>; id: number }> = [];
      const settled = new Map<number, WaitEnd<Lease>['outcome']>();
      const failures: string[] = [];

      for (let step = 0; step < 250; step++) {
        const at = `seed ${seed}, step ${step}`;
        const roll = r();
        if (roll < 0.45) {
          const chain: Chain = { user: pick(USERS), teams: [pick(TEAMS)], account: 'acct' };
          // An arrival: waiters first, then straight in, else queue under its team.
          queue.pump();
          const a = ledger.acquire(s, chain, 'tts-request');
          if (a.kind === 'granted') live.push({ lease: a.lease, chain });
          else if (waitable(a)) {
            const wait = waitingTeam(s, chain)!;
            const id = step;
            const ticket = queue.enqueue(
              wait.team,
              wait.policy,
              () => {
                if (settled.has(id)) failures.push(`${at}: waiter ${id} tried after it ${settled.get(id)}`);
                const b = ledger.acquire(s, chain, 'tts-request');
                return b.kind === 'granted' ? b.lease : undefined;
              },
              (end) => {
                if (settled.has(id)) failures.push(`${at}: waiter ${id} settled twice`);
                settled.set(id, end.outcome);
                const i = waiting.findIndex((w) => w.id === id);
                if (i !== -1) waiting.splice(i, 1);
                if (end.outcome === 'admitted') live.push({ lease: end.value, chain });
              },
            );
            if (ticket) waiting.push({ ticket, id });
            else if (queue.sizeOf(wait.team) < wait.policy.maxWaiters) failures.push(`${at}: refused a place with room in ${wait.team}`);
          }
        } else if (roll < 0.75 && live.length > 0) {
          live.splice(Math.floor(r() * live.length), 1)[0]!.lease.release();
        } else if (roll < 0.85 && waiting.length > 0) {
          const w = pick(waiting);
          if (!queue.cancel(w.ticket)) failures.push(`${at}: a queued waiter could not be cancelled`);
          if (settled.get(w.id) !== 'cancelled') failures.push(`${at}: cancel did not settle as cancelled`);
        } else {
          t += Math.floor(r() * 200);
          queue.expire();
        }

        // What live leases hold is all that is held: a settled non-admitted waiter holds nothing.
        if (ledger.inUse('account', 'acct', 'tts_units') !== live.length) failures.push(`${at}: account holds ${ledger.inUse('account', 'acct', 'tts_units')}, ${live.length} live`);
        if (live.length > acct.concurrency) failures.push(`${at}: ${live.length} over the account's ${acct.concurrency}`);
        for (const [team, l] of Object.entries(teams)) {
          const held = live.filter((x) => x.chain.teams.includes(team)).length;
          if (l.maxUnits !== undefined && held > l.maxUnits) failures.push(`${at}: team ${team} ${held} over ${l.maxUnits}`);
          if (queue.sizeOf(team) > l.wait.maxWaiters) failures.push(`${at}: team ${team} has ${queue.sizeOf(team)} waiting`);
        }
        for (const [user, l] of Object.entries(users)) {
          const held = live.filter((x) => x.chain.user === user).length;
          if (held > l.maxUnits) failures.push(`${at}: user ${user} ${held} over ${l.maxUnits}`);
        }
        for (const w of waiting) if (settled.has(w.id)) failures.push(`${at}: waiter ${w.id} settled but queued`);
        if (queue.size !== waiting.length) failures.push(`${at}: queue has ${queue.size}, ${waiting.length} waiting`);
        if (failures.length > 0) break;
      }
      expect(failures).toEqual([]);
    }
  });

  it('serves waiting teams round-robin on a shared account unit, and admits every waiter within (place in its team) × teams', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const s = snapshot({ accounts: [account('acct', 1)] });
      const ledger = createAdmissionLedger();
      const queue = new WaitQueue<Lease>({ now: () => 0 });
      ledger.onRelease?.(() => queue.pump());
      let held = ledger.acquire(s, on('x', 'none'), 'tts-request');
      const admitted: Array<{ id: string; team: string }> = [];
      const leases = new Map<string, Lease>();
      // Reference model: teams in ring order, each with its FIFO; a served team goes to the back.
      const ring: Array<{ team: string; ids: string[] }> = [];
      const expected: string[] = [];
      const bound = new Map<string, number>();
      let n = 0;
      const arrive = (team: string): void => {
        const id = `${team}#${n++}`;
        const entry = ring.find((x) => x.team === team);
        if (entry) entry.ids.push(id);
        else ring.push({ team, ids: [id] });
        // Ahead of it: its team's earlier waiters, and each other team at most once per turn.
        const place = ring.find((x) => x.team === team)!.ids.length;
        bound.set(id, admitted.length + place * TEAMS.length);
        queue.enqueue(
          team,
          { maxMs: 1e9, maxWaiters: 1000 },
          () => {
            const a = ledger.acquire(s, on(id, team), 'tts-request');
            return a.kind === 'granted' ? a.lease : undefined;
          },
          (end) => {
            if (end.outcome !== 'admitted') throw new Error('only admissions expected');
            admitted.push({ id, team });
            leases.set(id, end.value);
          },
        );
      };
      for (let i = 0; i < 6; i++) arrive(TEAMS[Math.floor(r() * TEAMS.length)]!);
      for (let step = 0; step < 60 && (queue.size > 0 || step < 20); step++) {
        // Arrivals between releases join the ring at the back.
        while (r() < 0.5) arrive(TEAMS[Math.floor(r() * TEAMS.length)]!);
        if (ring.length > 0) {
          const next = ring.shift()!;
          expected.push(next.ids.shift()!);
          if (next.ids.length > 0) ring.push(next);
        }
        const before = admitted.length;
        if (held.kind === 'granted') held.lease.release();
        // The unit went to the next waiter; with none waiting, a placeholder keeps the account full.
        held = admitted.length > before ? { kind: 'granted', lease: leases.get(admitted.at(-1)!.id)! } : ledger.acquire(s, on('x', 'none'), 'tts-request');
      }
      const got = admitted.map((a) => a.id);
      expect(got, `seed ${seed}`).toEqual(expected);
      // No starvation: each waiter was served within its bound.
      got.forEach((id, i) => expect(i, `seed ${seed}: ${id}`).toBeLessThan(bound.get(id)!));
      expect(ledger.inUse('account', 'acct', 'tts_units'), `seed ${seed}`).toBe(1);
    }
  });
});
