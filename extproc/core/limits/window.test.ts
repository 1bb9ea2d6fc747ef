import { describe, expect, it } from 'vitest';
import { SlidingWindow } from './window.ts';

describe('SlidingWindow', () => {
  it('never lets any 60 s interval hold more than the limit, and its wait is exact (random arrivals)', () => {
    for (let seed = 1; seed <= 50; seed++) {
      let x = seed;
      const r = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const limit = 1 + Math.floor(r() * 6);
      const w = new SlidingWindow(limit, 60_000);
      const admitted: number[] = [];
      let t = 0;
      for (let i = 0; i < 400; i++) {
        t += Math.floor(r() * 20_000);
        const wait = w.waitMs(t);
        if (wait === 0) {
          w.take(t);
          admitted.push(t);
        } else {
          // Refused now, admitted exactly when the wait is over, not a millisecond before.
          expect(w.waitMs(t + wait - 1)).toBeGreaterThan(0);
          expect(w.waitMs(t + wait)).toBe(0);
        }
      }
      for (const start of admitted) {
        expect(admitted.filter((a) => a >= start && a < start + 60_000).length).toBeLessThanOrEqual(limit);
      }
    }
  });

  it('keeps the most recent admissions when its limit changes', () => {
    const w = new SlidingWindow(4, 60_000);
    for (const t of [0, 1000, 2000, 3000]) w.take(t);
    w.resize(2);
    expect(w.waitMs(3500)).toBe(62_000 - 3500);
    w.resize(3);
    expect(w.waitMs(3500)).toBe(0);
    w.take(3500);
    expect(w.waitMs(3600)).toBe(62_000 - 3600);
  });
});
