import { describe, expect, it } from 'vitest';
import { compareWithPeers, roundRatios } from './compare.ts';

describe('roundRatios', () => {
  it('divides round by round and summarises the ratios as median, min and max', () => {
    expect(roundRatios([20, 30, 12], [10, 10, 12])).toEqual({ ratio: { median: 2, min: 1, max: 3, n: 3 }, skipped: 0 });
  });

  it('leaves out rounds whose denominator is zero, negative or not finite, and counts them', () => {
    expect(roundRatios([10, 10, 10, 10], [5, 0, -3, Number.NaN])).toEqual({ ratio: { median: 2, min: 2, max: 2, n: 1 }, skipped: 3 });
  });

  it('gives no ratio at all when no round can be divided', () => {
    expect(roundRatios([1, 2], [0, -1])).toEqual({ skipped: 2 });
  });

  it('refuses rounds of different lengths', () => {
    expect(() => roundRatios([1, 2], [1])).toThrow(RangeError);
  });
});

describe('compareWithPeers', () => {
  // Three rounds of p50 µs: the edge adds 150/120/200, the Node floor 100/100/100, nginx 50/40/0.
  const rounds = {
    direct: [100, 110, 100],
    'edge in-proc': [250, 230, 300],
    'node floor': [200, 210, 200],
    nginx: [150, 150, 100],
  };

  it('divides the added amounts (figure minus direct, round by round), not the raw figures', () => {
    const r = compareWithPeers(rounds, { subjects: ['edge in-proc'], peers: ['node floor'], of: 'added', baseline: 'direct' });
    expect(r['edge in-proc']).toEqual([{ peer: 'node floor', of: 'added', ratio: { median: 1.5, min: 1.2, max: 2, n: 3 }, skipped: 0 }]);
  });

  it('skips the round in which a peer added nothing measurable', () => {
    const r = compareWithPeers(rounds, { subjects: ['edge in-proc'], peers: ['nginx'], of: 'added', baseline: 'direct' });
    expect(r['edge in-proc']![0]).toMatchObject({ peer: 'nginx', ratio: { median: 3, min: 3, max: 3, n: 2 }, skipped: 1 });
  });

  it('divides values for throughput figures (above 1: more requests per CPU-second than the peer)', () => {
    const perCpu = { 'edge in-proc': [10_000, 12_000], nginx: [40_000, 40_000], 'node floor': [12_500, 12_000] };
    const r = compareWithPeers(perCpu, { subjects: ['edge in-proc'], peers: ['nginx', 'node floor'], of: 'value' });
    expect(r['edge in-proc']!.map((x) => [x.peer, x.ratio?.median])).toEqual([
      ['nginx', 0.275],
      ['node floor', 0.9],
    ]);
  });

  it('leaves out peers and subjects without figures (a skipped peer, a path not run)', () => {
    const r = compareWithPeers(rounds, { subjects: ['edge in-proc', 'edge gRPC'], peers: ['portkey', 'node floor'], of: 'added', baseline: 'direct' });
    expect(Object.keys(r)).toEqual(['edge in-proc']);
    expect(r['edge in-proc']!.map((x) => x.peer)).toEqual(['node floor']);
  });

  it('needs the baseline for added ratios', () => {
    expect(() => compareWithPeers(rounds, { subjects: ['edge in-proc'], peers: ['nginx'], of: 'added' })).toThrow(RangeError);
    expect(() => compareWithPeers(rounds, { subjects: ['edge in-proc'], peers: ['nginx'], of: 'added', baseline: 'nope' })).toThrow(RangeError);
  });
});
