import { describe, expect, it } from 'vitest';
import { goalMet, renderTable, rowGoals, vsPeers, type CaseResult, type Row } from './report.ts';

const one = (v: number) => ({ median: v, min: v, max: v, n: 1 });

const edge: Row = {
  case: '1 REST latency',
  metric: 'p50',
  path: 'edge in-proc',
  unit: 'µs',
  value: { median: 250, min: 230, max: 300, n: 3 },
  baseline: 100,
  added: { median: 150, min: 120, max: 200, n: 3 },
  vs: [
    { peer: 'node floor', of: 'added', ratio: { median: 1.5, min: 1.2, max: 2, n: 3 }, skipped: 0 },
    { peer: 'nginx', of: 'added', ratio: { median: 3, min: 3, max: 3, n: 2 }, skipped: 1 },
    { peer: 'portkey', of: 'added', skipped: 3 },
  ],
  goals: [
    { cmp: 'le', value: 150, of: 'added', text: 'added ≤ 150 µs' },
    { cmp: 'le', value: 1.2, of: 'peer', peer: 'node floor', text: 'added ≤ 1.2 × node floor' },
  ],
};

describe('vsPeers', () => {
  it('prints each peer ratio with its spread, the rounds it is made of when some were left out, – when none', () => {
    expect(vsPeers(edge)).toBe('added ÷ node floor ×1.50 (1.20 … 2.00); added ÷ nginx ×3.00 (3.00 … 3.00) [2 of 3 rounds]; added ÷ portkey –');
  });

  it('prints value ratios without "added"', () => {
    expect(vsPeers({ ...edge, vs: [{ peer: 'nginx', of: 'value', ratio: one(0.25), skipped: 0 }] })).toBe('÷ nginx ×0.25 (0.25 … 0.25)');
  });
});

describe('goals against peers', () => {
  it('judges a peer goal on the median ratio, and the others as before', () => {
    expect(rowGoals(edge).map((g) => g.met)).toEqual([true, false]);
    const close = { ...edge, vs: [{ peer: 'node floor', of: 'added' as const, ratio: one(1.1), skipped: 0 }] };
    expect(goalMet(close, edge.goals![1]!)).toBe(true);
  });

  it('neither meets nor misses a goal against a peer that did not run', () => {
    expect(goalMet({ ...edge, vs: [] }, edge.goals![1]!)).toBeUndefined();
  });

  it('misses a goal against a peer whose ratio could not be computed', () => {
    expect(goalMet({ ...edge, vs: [{ peer: 'node floor', of: 'added', skipped: 3 }] }, edge.goals![1]!)).toBe(false);
  });
});

describe('renderTable', () => {
  it('puts the peer ratios and every goal with its verdict in the same row', () => {
    const c: CaseResult = { id: 1, title: 'REST latency', rows: [edge, { ...edge, path: 'node floor', vs: undefined, goals: undefined }], notes: [], raw: null };
    const lines = renderTable([c]).split('\n');
    expect(lines[0]).toContain('| vs peers (ratio: median, min … max) |');
    expect(lines[2]).toBe(
      '| 1 REST latency | p50 | edge in-proc | 250 µs | 230 … 300 | ×2.50, +150 µs (120 … 200) | added ÷ node floor ×1.50 (1.20 … 2.00); added ÷ nginx ×3.00 (3.00 … 3.00) [2 of 3 rounds]; added ÷ portkey – | added ≤ 150 µs; added ≤ 1.2 × node floor | ✓ ✗ |',
    );
    expect(lines[3]).toBe('| 1 REST latency | p50 | node floor | 250 µs | 230 … 300 | ×2.50, +150 µs (120 … 200) |  |  |  |');
    // Same number of cells in the header and every row.
    const cells = (l: string) => l.split('|').length;
    expect(new Set(lines.map(cells)).size).toBe(1);
  });
});
