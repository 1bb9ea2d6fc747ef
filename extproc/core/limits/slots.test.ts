import { describe, expect, it } from 'vitest';
import type { Lease } from './ledger.ts';
import { SlotTable, type SlotReleaseCause } from './slots.ts';

/** A lease counting its releases, like the ledger's (idempotent: true once). */
function lease(): Lease & { freed: number } {
  let released = false;
  const l = {
    kind: 'tts-request' as const,
    freed: 0,
    get released() {
      return released;
    },
    release() {
      if (released) return false;
      released = true;
      l.freed++;
      return true;
    },
  };
  return l;
}

function table(claimTimeoutMs = 5000) {
  let t = 1_000;
  const causes: SlotReleaseCause[] = [];
  const slots = new SlotTable({ claimTimeoutMs, now: () => t, prefix: 'pod', onRelease: (c) => causes.push(c) });
  return { slots, causes, advance: (ms: number) => (t += ms) };
}

describe('SlotTable', () => {
  it('releases a slot once, whichever of stream end and access log comes first', () => {
    const { slots, causes } = table();
    const a = lease();
    const id = slots.hold(a);
    expect(slots.claim(id)).toBe(true);
    expect(slots.claim(id)).toBe(false);
    expect(slots.release(id, 'stream')).toBe(true);
    expect(slots.release(id, 'access_log')).toBe(false);
    expect(slots.release(id, 'stream')).toBe(false);
    expect(a.freed).toBe(1);
    expect(causes).toEqual(['stream']);
    expect(slots.held).toBe(0);
  });

  it('the access log releases a slot whose stream is still open; the stream end then finds nothing', () => {
    const { slots, causes } = table();
    const a = lease();
    const id = slots.hold(a);
    slots.claim(id);
    expect(slots.release(id, 'access_log')).toBe(true);
    expect(slots.release(id, 'stream')).toBe(false);
    expect(a.freed).toBe(1);
    expect(causes).toEqual(['access_log']);
  });

  it('sweeps only unclaimed slots past the claim timeout, oldest first', () => {
    const { slots, causes, advance } = table(5000);
    const old = lease();
    const claimed = lease();
    const oldId = slots.hold(old);
    const claimedId = slots.hold(claimed);
    slots.claim(claimedId);
    advance(3000);
    const young = lease();
    slots.hold(young);
    advance(1999);
    expect(slots.sweep()).toBe(0);
    advance(1);
    expect(slots.sweep()).toBe(1);
    expect(old.freed).toBe(1);
    expect(claimed.freed).toBe(0);
    expect(young.freed).toBe(0);
    // A claim after the sweep cannot resurrect it.
    expect(slots.claim(oldId)).toBe(false);
    advance(3000);
    expect(slots.sweep()).toBe(1);
    expect(young.freed).toBe(1);
    expect(claimed.freed).toBe(0);
    expect(causes).toEqual(['sweeper', 'sweeper']);
    expect(slots.held).toBe(1);
  });

  it('knows its own ids, ignores foreign ones, and releases everything at shutdown', () => {
    const { slots, causes } = table();
    const a = lease();
    const b = lease();
    const ida = slots.hold(a);
    slots.hold(b);
    slots.claim(ida);
    expect(ida.startsWith('pod.')).toBe(true);
    expect(slots.issued(ida)).toBe(true);
    expect(slots.issued('other.1')).toBe(false);
    expect(slots.release('other.1', 'stream')).toBe(false);
    expect(slots.releaseAll()).toBe(2);
    expect(a.freed + b.freed).toBe(2);
    expect(causes).toEqual(['shutdown', 'shutdown']);
    expect(slots.releaseAll()).toBe(0);
  });

  it('never frees more than it took, over random interleavings of claim, release, sweep', () => {
    for (let seed = 1; seed <= 50; seed++) {
      let x = seed;
      const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31) % n);
      const { slots, advance } = table(100);
      const leases: Array<ReturnType<typeof lease>> = [];
      const ids: string[] = [];
      for (let step = 0; step < 300; step++) {
        const op = rand(6);
        if (op === 0 || ids.length === 0) {
          const l = lease();
          leases.push(l);
          ids.push(slots.hold(l));
        } else if (op === 1) slots.claim(ids[rand(ids.length)]!);
        else if (op === 2) slots.release(ids[rand(ids.length)]!, 'stream');
        else if (op === 3) slots.release(ids[rand(ids.length)]!, 'access_log');
        else if (op === 4) advance(rand(60));
        else slots.sweep();
        // Plain checks per step (expect() per step is slow); a failure names its seed and step.
        const freed = leases.reduce((n, l) => n + l.freed, 0);
        if (leases.some((l) => l.freed > 1) || freed + slots.held !== leases.length) {
          throw new Error(`seed ${seed} step ${step}: freed ${freed}, held ${slots.held}, taken ${leases.length}`);
        }
      }
    }
  });
});
