/**
 * Voicegate against its peers (nginx, the Node floor, Portkey's gateway), measured in the same
 * rounds: pure functions over per-round figures, no clocks, no I/O. A ratio is computed round by
 * round — voicegate's round-i figure over the peer's round-i figure — and summarised as median,
 * min and max, like every other figure of the bench.
 */
import { pairedDifferences, spread, type Spread } from './stats.ts';

/**
 * What a ratio divides: `added` — the latency each path adds over the direct baseline (lower is
 * better, 1.0 = as cheap as the peer); `value` — the figure itself, e.g. requests per CPU-second
 * (higher is better, 1.0 = as efficient as the peer).
 */
export type RatioOf = 'added' | 'value';

export interface PeerRatio {
  /** The peer divided by, e.g. `node floor`. */
  readonly peer: string;
  readonly of: RatioOf;
  /** Median, min and max of the per-round ratios; absent when no round could be divided. */
  readonly ratio?: Spread;
  /** Rounds left out because the peer's figure was not positive (an added time lost in noise). */
  readonly skipped: number;
}

/**
 * `num[i] / den[i]` round by round, as a spread. A round whose denominator is zero, negative or not
 * finite is left out and counted: a peer that adds nothing measurable cannot be divided by, and a
 * negative added time is noise, not a figure.
 */
export function roundRatios(num: readonly number[], den: readonly number[]): { ratio?: Spread; skipped: number } {
  if (num.length !== den.length) throw new RangeError(`rounds differ: ${num.length} vs ${den.length}`);
  const r: number[] = [];
  for (let i = 0; i < num.length; i++) {
    const a = num[i] as number;
    const b = den[i] as number;
    if (Number.isFinite(a) && Number.isFinite(b) && b > 0) r.push(a / b);
  }
  return r.length ? { ratio: spread(r), skipped: num.length - r.length } : { skipped: num.length };
}

export interface CompareOptions {
  /** Voicegate's paths, e.g. `edge in-proc`, `edge gRPC`. */
  readonly subjects: readonly string[];
  /** Peers to divide by, in display order; those without figures (skipped peers) are left out. */
  readonly peers: readonly string[];
  readonly of: RatioOf;
  /** The direct path, required for `added`. */
  readonly baseline?: string;
}

/**
 * For every subject with figures, its ratio to every peer with figures.
 *
 * @example compareWithPeers({ direct: [100], 'edge in-proc': [250], 'node floor': [200] },
 *   { subjects: ['edge in-proc'], peers: ['node floor'], of: 'added', baseline: 'direct' })
 *   // { 'edge in-proc': [{ peer: 'node floor', of: 'added', ratio: { median: 1.5, … }, skipped: 0 }] }
 */
export function compareWithPeers(rounds: Readonly<Record<string, readonly number[]>>, o: CompareOptions): Record<string, PeerRatio[]> {
  let base: readonly number[] | undefined;
  if (o.of === 'added') {
    base = o.baseline === undefined ? undefined : rounds[o.baseline];
    if (!base) throw new RangeError('added ratios need the baseline path and its figures');
  }
  const figure = (name: string): readonly number[] | undefined => {
    const v = rounds[name];
    if (!v) return undefined;
    return base ? pairedDifferences(v, base) : v;
  };
  const out: Record<string, PeerRatio[]> = {};
  for (const subject of o.subjects) {
    const num = figure(subject);
    if (!num) continue;
    const list: PeerRatio[] = [];
    for (const peer of o.peers) {
      const den = figure(peer);
      if (!den) continue;
      list.push({ peer, of: o.of, ...roundRatios(num, den) });
    }
    out[subject] = list;
  }
  return out;
}
