/**
 * Benchmark results and their markdown table. Each row is one figure on one path, with its spread
 * across rounds, its ratio to the direct baseline measured in the same run, and the goal it is held
 * against (printed, never asserted).
 */
import type { PeerRatio } from './compare.ts';
import type { Spread } from './stats.ts';

export interface Goal {
  /** `le`: the figure must be at most `value`; `ge`: at least. */
  readonly cmp: 'le' | 'ge';
  readonly value: number;
  /**
   * Which figure the goal judges: the value itself, the added cost over the baseline, or the
   * median ratio to a peer (`peer` names it, e.g. `node floor`).
   */
  readonly of: 'value' | 'added' | 'peer';
  readonly peer?: string;
  /** As printed, e.g. `added ≤ 150 µs`. */
  readonly text: string;
}

export interface Row {
  /** Case number and name, e.g. `1 REST latency`. */
  readonly case: string;
  readonly metric: string;
  /** `direct`, `edge in-proc`, `edge gRPC`, … */
  readonly path: string;
  readonly unit: string;
  readonly value: Spread;
  /** Median of the baseline row (same metric, same run), for the ratio column. */
  readonly baseline?: number;
  /** Round-by-round difference to the baseline. */
  readonly added?: Spread;
  /** Voicegate's rows only: ratios to the peers measured in the same rounds. */
  readonly vs?: readonly PeerRatio[];
  readonly goals?: readonly Goal[];
}

export interface CaseResult {
  readonly id: number;
  readonly title: string;
  readonly rows: readonly Row[];
  /** Caveats and settings shown under the table. */
  readonly notes: readonly string[];
  /** Per-round raw figures for the JSON file. */
  readonly raw: unknown;
}

/**
 * Whether a row meets one of its goals. Undefined when it cannot be judged: a goal against a peer
 * that was skipped in this run (not installed) is neither met nor missed.
 */
export function goalMet(row: Row, g: Goal): boolean | undefined {
  let v: number | undefined;
  if (g.of === 'peer') {
    const r = row.vs?.find((x) => x.peer === g.peer);
    if (!r) return undefined;
    v = r.ratio?.median;
  } else {
    v = g.of === 'added' ? row.added?.median : row.value.median;
  }
  if (v === undefined || !Number.isFinite(v)) return false;
  return g.cmp === 'le' ? v <= g.value : v >= g.value;
}

/** Every goal of a row with its verdict. */
export function rowGoals(row: Row): { goal: Goal; met: boolean | undefined }[] {
  return (row.goals ?? []).map((goal) => ({ goal, met: goalMet(row, goal) }));
}

/** Rounds to a readable precision: 3 significant digits below 100, integers with separators above. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 100) return Math.round(n).toLocaleString('en-US');
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  if (a === 0) return '0';
  return n.toPrecision(2);
}

function vsBaseline(r: Row): string {
  const parts: string[] = [];
  if (r.baseline !== undefined && r.baseline !== 0) parts.push(`×${(r.value.median / r.baseline).toFixed(2)}`);
  if (r.added) parts.push(`${r.added.median >= 0 ? '+' : ''}${fmt(r.added.median)} ${r.unit} (${fmt(r.added.min)} … ${fmt(r.added.max)})`);
  return parts.join(', ');
}

/**
 * The peer ratios of a row: `added ÷ node floor ×1.42 (1.20 … 1.80)` for latencies (the added
 * amounts divided), `÷ nginx ×0.61 (…)` for throughput figures (the values divided).
 */
export function vsPeers(r: Row): string {
  return (r.vs ?? [])
    .map((p) => {
      const what = `${p.of === 'added' ? 'added ' : ''}÷ ${p.peer}`;
      if (!p.ratio) return `${what} –`;
      const n = p.skipped ? ` [${p.ratio.n} of ${p.ratio.n + p.skipped} rounds]` : '';
      return `${what} ×${p.ratio.median.toFixed(2)} (${p.ratio.min.toFixed(2)} … ${p.ratio.max.toFixed(2)})${n}`;
    })
    .join('; ');
}

function verdict(met: boolean | undefined): string {
  return met === undefined ? '–' : met ? '✓' : '✗';
}

/** The results table in GitHub markdown. */
export function renderTable(cases: readonly CaseResult[]): string {
  const lines = [
    '| case | metric | path | median | min … max | vs direct (added: median, min … max) | vs peers (ratio: median, min … max) | goal | met |',
    '|---|---|---|---:|---:|---|---|---|:---:|',
  ];
  for (const c of cases) {
    for (const r of c.rows) {
      const goals = rowGoals(r);
      lines.push(
        `| ${r.case} | ${r.metric} | ${r.path} | ${fmt(r.value.median)} ${r.unit} | ${fmt(r.value.min)} … ${fmt(r.value.max)} | ${vsBaseline(r)} | ${vsPeers(r)} | ${goals.map((g) => g.goal.text).join('; ')} | ${goals.map((g) => verdict(g.met)).join(' ')} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Notes of every case, as a bullet list. */
export function renderNotes(cases: readonly CaseResult[]): string {
  return cases.flatMap((c) => c.notes.map((n) => `- **${c.id}. ${c.title}**: ${n}`)).join('\n');
}
