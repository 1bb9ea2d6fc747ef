import { describe, expect, it } from 'vitest';
import {
  againstBaseline,
  median,
  pairedDifferences,
  percentile,
  percentileSorted,
  ratio,
  sortedCopy,
  spread,
  summarizeLatencies,
} from './stats.ts';

describe('percentile (nearest rank)', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => 100 - i); // 100…1, unsorted on purpose

  it('returns a real sample at the nearest rank', () => {
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 100)).toBe(100);
    expect(percentile(hundred, 0)).toBe(1);
    expect(percentileSorted([1, 2, 3, 4], 50)).toBe(2);
    expect(percentileSorted([1, 2, 3, 4], 51)).toBe(3);
  });

  it('takes the slowest sample as p99 when there are fewer than 100', () => {
    expect(percentile([5, 1, 9, 3], 99)).toBe(9);
  });

  it('sorts numerically, not as strings', () => {
    expect(sortedCopy([10, 9, 100, 1])).toEqual([1, 9, 10, 100]);
    expect(percentile([10, 9, 100, 1], 50)).toBe(9);
  });

  it('leaves its input untouched', () => {
    const v = [3, 1, 2];
    percentile(v, 50);
    expect(v).toEqual([3, 1, 2]);
  });

  it('rejects empty input, non-finite samples and out-of-range percentiles', () => {
    expect(() => percentile([], 50)).toThrow(RangeError);
    expect(() => percentile([1, Number.NaN], 50)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
  });
});

describe('median and spread', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it('reports median, min, max and the number of rounds', () => {
    expect(spread([12, 10, 30, 11, 13])).toEqual({ median: 12, min: 10, max: 30, n: 5 });
  });

  it('refuses to summarise nothing', () => {
    expect(() => spread([])).toThrow(RangeError);
    expect(() => median([])).toThrow(RangeError);
  });
});

describe('summarizeLatencies', () => {
  it('reduces samples to count, p50, p99, mean, min and max', () => {
    const samples = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(summarizeLatencies(samples)).toEqual({ count: 1000, p50: 500, p99: 990, mean: 500.5, min: 1, max: 1000 });
  });

  it('lets one outlier move p99 and max but not p50', () => {
    const samples = [...Array.from({ length: 99 }, () => 100), 10_000];
    const s = summarizeLatencies(samples);
    expect(s.p50).toBe(100);
    expect(s.p99).toBe(100);
    expect(s.max).toBe(10_000);
    expect(s.mean).toBeCloseTo(199, 6);
  });
});

describe('pairedDifferences and ratio', () => {
  it('subtracts round by round', () => {
    expect(pairedDifferences([15, 20, 12], [10, 11, 10])).toEqual([5, 9, 2]);
  });

  it('refuses rounds of different lengths', () => {
    expect(() => pairedDifferences([1, 2], [1])).toThrow(RangeError);
  });

  it('divides, with NaN for a zero baseline', () => {
    expect(ratio(5, 10)).toBe(0.5);
    expect(ratio(5, 0)).toBeNaN();
  });
});

describe('againstBaseline', () => {
  it('gives the baseline median and the per-round added spread, and nothing for the baseline row', () => {
    expect(againstBaseline([15, 20, 12], [10, 11, 10], true)).toEqual({});
    expect(againstBaseline([15, 20, 12], [10, 11, 10], false)).toMatchObject({ baseline: 10, added: { median: 5, min: 2, max: 9 } });
  });
});
