/**
 * The grant arithmetic under many seeded random interleavings of pods that read the ledger,
 * write it by compare-and-set (stale writes lose), admit and finish work, die, get cut off from
 * the ledger, and run with clocks skewed by less than the margin. After every step: the ledger
 * never records more than the account's units, and what the pods may admit against together never
 * exceeds them (a failing seed is printed).
 */
import { describe, expect, it } from 'vitest';
import {
  admissible,
  afterWrite,
  beforeWrite,
  decodeGrantEntry,
  DEFAULT_GRANT_POLICY,
  desiredUnits,
  EMPTY_ENTRY,
  encodeGrantEntry,
  liveUnits,
  NO_GRANT,
  planSettle,
  type GrantEntry,
  type LocalGrant,
  type SettlePlan,
} from './grants.ts';

/** mulberry32: a small seeded generator, so a failure can be replayed from its seed. */
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

const P = DEFAULT_GRANT_POLICY;

interface Pod {
  readonly id: string;
  readonly skew: number;
  local: LocalGrant;
  need: number;
  demanded: boolean;
  alive: boolean;
  cutUntil: number;
  pending?: { plan: SettlePlan; revision: number | undefined };
}

function settleInput(pod: Pod, total: number, now: number) {
  return { ...P, total, need: pod.need, held: pod.local.units, demanded: pod.demanded, now };
}

describe('planSettle', () => {
  it('borrows the need plus headroom from free units, and records what is in use', () => {
    const plan = planSettle(undefined, 'a', { ...P, total: 4, need: 1, held: 0, demanded: true, now: 1000 });
    expect(plan.granted).toBe(2);
    expect(plan.entry.grants['a']).toEqual({ units: 2, expiresAt: 1000 + P.leaseMs, wants: 0 });
    expect(plan.cap).toBe(0); // nothing more is admitted before the write succeeded
  });

  it('reclaims an expired lease of another pod and never grants more than is free', () => {
    const entry: GrantEntry = { grants: { dead: { units: 3, expiresAt: 500, wants: 0 }, b: { units: 1, expiresAt: 5000, wants: 0 } } };
    const plan = planSettle(entry, 'a', { ...P, total: 4, need: 0, held: 0, demanded: true, now: 1000 });
    expect(plan.entry.grants['dead']).toBeUndefined();
    expect(plan.granted).toBe(1);
    const full = planSettle({ grants: { b: { units: 4, expiresAt: 5000, wants: 0 } } }, 'a', { ...P, total: 4, need: 0, held: 0, demanded: true, now: 1000 });
    expect(full.granted).toBe(0);
    expect(full.entry.grants['a']).toMatchObject({ units: 0, wants: 1 });
  });

  it('keeps idle units within the hysteresis band, gives back beyond it, and gives up headroom when others wait', () => {
    expect(desiredUnits({ need: 1, held: 3, demanded: false, headroom: 1, slack: 1, total: 8 }, 0, 1)).toBe(3);
    expect(desiredUnits({ need: 1, held: 4, demanded: false, headroom: 1, slack: 1, total: 8 }, 0, 1)).toBe(2);
    expect(desiredUnits({ need: 1, held: 3, demanded: false, headroom: 1, slack: 1, total: 8 }, 1, 2)).toBe(1);
    // Beyond its fair share a pod takes no new work while others wait, but records what it uses.
    const plan = planSettle({ grants: { b: { units: 0, expiresAt: 9e9, wants: 2 } } }, 'a', { ...P, total: 4, need: 4, held: 4, demanded: false, now: 0 });
    expect(plan.entry.grants['a']?.units).toBe(4);
    expect(plan.granted).toBe(2);
    expect(plan.cap).toBe(2);
  });

  it('lowers what it admits against before the write that gives units back, so admissions during the write stay within the recorded grant', () => {
    const held: LocalGrant = { units: 4, validUntil: 10_000 };
    const entry: GrantEntry = { grants: { a: { units: 4, expiresAt: 10_750, wants: 0 }, b: { units: 0, expiresAt: 10_750, wants: 2 } } };
    const plan = planSettle(entry, 'a', { ...P, total: 4, need: 1, held: 4, demanded: false, now: 1000 });
    expect(plan.entry.grants['a']?.units).toBe(1);
    const during = beforeWrite(held, plan);
    expect(admissible(during, 1001)).toBe(1);
    expect(admissible(afterWrite(during, plan, false, P.marginMs), 1001)).toBe(1);
  });

  it('reads a malformed entry as unknown (nothing is granted from it)', () => {
    expect(decodeGrantEntry('{"grants":{"a":{"units":-1,"expiresAt":1,"wants":0}}}')).toBeUndefined();
    expect(decodeGrantEntry('not json')).toBeUndefined();
    const e: GrantEntry = { grants: { a: { units: 2, expiresAt: 10, wants: 1 } } };
    expect(decodeGrantEntry(encodeGrantEntry(e))).toEqual(e);
  });

  it('stops admitting at lease end minus the margin by its own clock, and never grows a grant on a failed write', () => {
    const plan = planSettle(EMPTY_ENTRY, 'a', { ...P, total: 4, need: 0, held: 0, demanded: true, now: 0 });
    const failed = afterWrite(beforeWrite(NO_GRANT, plan), plan, false, P.marginMs);
    expect(admissible(failed, 0)).toBe(0);
    const ok = afterWrite(beforeWrite(NO_GRANT, plan), plan, true, P.marginMs);
    expect(admissible(ok, P.leaseMs - P.marginMs - 1)).toBe(1);
    expect(admissible(ok, P.leaseMs - P.marginMs)).toBe(0);
  });
});

describe('the sum of grants under random interleavings', () => {
  function run(seed: number, withCuts: boolean): void {
    const r = rng(seed);
    const total = 1 + Math.floor(r() * 8);
    const pods: Pod[] = Array.from({ length: 2 + Math.floor(r() * 3) }, (_, i) => ({
      id: `pod-${i}`,
      // Pairwise skew stays below the margin: each clock within ±margin/2 of true time.
      skew: Math.floor((r() - 0.5) * (P.marginMs - 1)),
      local: NO_GRANT,
      need: 0,
      demanded: false,
      alive: true,
      cutUntil: 0,
    }));
    let t = 0;
    let store: { entry: GrantEntry; revision: number } | undefined;
    const clock = (p: Pod): number => t + p.skew;
    const check = (step: number, op: string): void => {
      const ctx = `seed ${seed} step ${step} (${op})`;
      if (store) expect(Object.values(store.entry.grants).reduce((s, g) => s + g.units, 0), ctx).toBeLessThanOrEqual(total);
      const mayAdmit = pods.filter((p) => p.alive).reduce((s, p) => s + admissible(p.local, clock(p)), 0);
      expect(mayAdmit, ctx).toBeLessThanOrEqual(total);
      // Without cuts every pod's work was admitted under a live lease, so what runs fits too.
      if (!withCuts) expect(pods.reduce((s, p) => s + p.need, 0), ctx).toBeLessThanOrEqual(total);
    };
    const read = (p: Pod): void => {
      if (clock(p) < p.cutUntil || p.pending) return;
      const plan = planSettle(store?.entry, p.id, settleInput(p, total, clock(p)));
      // What a pod asks others to give way to is real demand only, never its headroom.
      const mine = plan.entry.grants[p.id];
      if (mine) expect(mine.wants, `seed ${seed}: wants`).toBeLessThanOrEqual(Math.max(0, (p.demanded ? p.need + 1 : p.need) - mine.units));
      p.local = beforeWrite(p.local, plan);
      p.pending = { plan, revision: store?.revision };
    };
    const write = (p: Pod): void => {
      if (!p.pending) return;
      const { plan, revision } = p.pending;
      p.pending = undefined;
      const ok = clock(p) >= p.cutUntil && store?.revision === revision;
      if (ok) store = { entry: plan.entry, revision: (revision ?? 0) + 1 };
      p.local = afterWrite(p.local, plan, ok, P.marginMs);
      if (ok) p.demanded = false;
    };
    const tick = (): void => {
      // Time passes. Without cuts, each pod's heartbeat renews its lease in time (every second of
      // a 3 s lease), even if a stale write of its own loses its compare-and-set first.
      if (!withCuts) {
        for (const q of pods.filter((q) => q.alive && q.local.validUntil - clock(q) < 1500)) {
          write(q);
          read(q);
          write(q);
        }
      }
      t += Math.floor(r() * 400);
    };
    for (let step = 0; step < 400; step++) {
      const p = pods[Math.floor(r() * pods.length)]!;
      const x = r();
      let op = 'tick';
      if (!p.alive) {
        tick();
      } else if (x < 0.25) {
        op = 'admit';
        if (p.need < admissible(p.local, clock(p))) p.need++;
        else p.demanded = true;
      } else if (x < 0.4) {
        op = 'finish';
        if (p.need > 0) p.need--;
      } else if (x < 0.6) {
        op = 'read';
        read(p);
      } else if (x < 0.8) {
        op = 'write';
        write(p);
      } else if (x < 0.95) {
        tick();
      } else if (x < 0.975) {
        // Death (kill -9): its connections close, so its work ends; its grant stays in the ledger.
        op = 'die';
        if (pods.filter((q) => q.alive).length > 1) {
          p.alive = false;
          p.need = 0;
        }
      } else if (withCuts) {
        op = 'cut';
        p.cutUntil = clock(p) + Math.floor(r() * 6000);
      }
      check(step, op);
    }
  }

  it('never exceeds the units with pods that borrow, return, renew, die and reclaim (300 seeds)', () => {
    for (let seed = 1; seed <= 300; seed++) run(seed, false);
  });

  it('never lets pods cut off from the ledger admit beyond the units (300 seeds)', () => {
    for (let seed = 1001; seed <= 1300; seed++) run(seed, true);
  });

  it('gives a pod that keeps being refused what it asks for from idle pods, even when their headroom would not fit (200 seeds)', () => {
    for (let seed = 2001; seed <= 2200; seed++) {
      const r = rng(seed);
      const total = 1 + Math.floor(r() * 8);
      const n = 2 + Math.floor(r() * 4);
      const pods: Pod[] = Array.from({ length: n }, (_, i) => ({ id: `pod-${i}`, skew: 0, local: NO_GRANT, need: 0, demanded: false, alive: true, cutUntil: 0 }));
      let store: { entry: GrantEntry; revision: number } | undefined;
      let t = 0;
      // One heartbeat of every pod in a random order; each settle is read and written at once.
      const round = (): void => {
        for (const p of [...pods].sort(() => r() - 0.5)) {
          const plan = planSettle(store?.entry, p.id, settleInput(p, total, t));
          p.local = afterWrite(beforeWrite(p.local, plan), plan, true, P.marginMs);
          store = { entry: plan.entry, revision: (store?.revision ?? 0) + 1 };
          p.demanded = false;
          expect(liveUnits(store.entry, t), `seed ${seed}`).toBeLessThanOrEqual(total);
        }
        t += 1000;
      };
      for (let i = 0; i < 3; i++) round(); // idle: headroom wherever it fits
      const busy = pods[Math.floor(r() * n)]!;
      const target = 1 + Math.floor(r() * total);
      let rounds = 0;
      for (; busy.need < target && rounds < 2 * target + 4; rounds++) {
        // The busy pod admits what its grant allows and is refused beyond it.
        busy.need = Math.min(target, Math.max(busy.need, admissible(busy.local, t)));
        if (busy.need < target) busy.demanded = true;
        round();
      }
      busy.need = Math.min(target, Math.max(busy.need, admissible(busy.local, t)));
      expect(busy.need, `seed ${seed}: ${n} pods, ${total} units, busy pod wants ${target}`).toBe(target);
    }
  });

  it('has the live sum the ledger would report match the recorded grants that are not expired', () => {
    const e: GrantEntry = { grants: { a: { units: 2, expiresAt: 10, wants: 0 }, b: { units: 1, expiresAt: 5, wants: 0 } } };
    expect(liveUnits(e, 4)).toBe(3);
    expect(liveUnits(e, 5)).toBe(2);
    expect(liveUnits(e, 4, 'a')).toBe(1);
  });
});
