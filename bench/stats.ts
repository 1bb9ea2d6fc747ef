/**
 * The benchmark's statistics: pure functions over plain number arrays, no clocks, no I/O.
 * Percentiles use the nearest-rank method (the value of a real sample, never an interpolation),
 * which is what latency tools such as HdrHistogram and autocannon report.
 */

/** Median, minimum and maximum of one figure across rounds. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Number of rounds the spread is made of. */
  readonly n: number;
}

/** One round's latency samples, reduced. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
}

function assertSamples(values: readonly number[]): void {
  if (values.length === 0) throw new RangeError('no samples');
  for (const v of values) if (!Number.isFinite(v)) throw new RangeError(`not a finite sample: ${v}`);
}

/**
 * Nearest-rank percentile: the smallest sample such that at least `p` % of all samples are ≤ it.
 * `sorted` must be ascending.
 *
 * @example percentileSorted([1, 2, 3, 4], 50) // 2
 */
export function percentileSorted(sorted: readonly number[], p: number): number {
  assertSamples(sorted);
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile out of range: ${p}`);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

/** Ascending copy; the input is left as it was. */
export function sortedCopy(values: readonly number[]): number[] {
  // Typed arrays sort numerically (Array#sort would compare as strings).
  return Array.from(Float64Array.from(values).sort());
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile(values: readonly number[], p: number): number {
  return percentileSorted(sortedCopy(values), p);
}

/**
 * The median of the values: the middle one, or the mean of the two middle ones for an even count
 * (a round-to-round figure, so the usual definition rather than nearest rank).
 *
 * @example median([3, 1, 2]) // 2
 */
export function median(values: readonly number[]): number {
  assertSamples(values);
  const s = sortedCopy(values);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median, min and max across rounds. */
export function spread(values: readonly number[]): Spread {
  assertSamples(values);
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { median: median(values), min, max, n: values.length };
}

/** Reduces one round's latency samples (any unit) to count, p50, p99, mean, min and max. */
export function summarizeLatencies(values: readonly number[]): LatencySummary {
  assertSamples(values);
  const s = sortedCopy(values);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    p50: percentileSorted(s, 50),
    p99: percentileSorted(s, 99),
    mean: sum / s.length,
    min: s[0] as number,
    max: s[s.length - 1] as number,
  };
}

/**
 * Per-round differences `a[i] - b[i]` (e.g. through-the-edge minus direct, measured in the same
 * round), so that drift between rounds does not leak into the added cost.
 */
export function pairedDifferences(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`rounds differ: ${a.length} vs ${b.length}`);
  return a.map((v, i) => v - (b[i] as number));
}

/**
 * The "vs direct" fields of a result row: the baseline's median and the per-round added amount.
 * Empty for the baseline's own row.
 */
export function againstBaseline(
  rounds: readonly number[],
  baseline: readonly number[],
  isBaseline: boolean,
): { baseline?: number; added?: Spread } {
  return isBaseline ? {} : { baseline: spread(baseline).median, added: spread(pairedDifferences(rounds, baseline)) };
}

/** `part / whole`, or NaN when the whole is zero (shown as "–" in tables). */
export function ratio(part: number, whole: number): number {
  return whole === 0 ? Number.NaN : part / whole;
}
