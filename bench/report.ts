/**
 * Benchmark results and their markdown table. Each row is one figure on one path, with its spread
 * across rounds, its ratio to the direct baseline measured in the same run, and the goal it is held
 * against (printed, never asserted).
 */
import type { Spread } from './stats.ts';

export interface Goal {
  /** `le`: the figure must be at most `value`; `ge`: at least. */
  readonly cmp: 'le' | 'ge';
  readonly value: number;
  /** Which figure the goal judges: the value itself or the added cost over the baseline. */
  readonly of: 'value' | 'added';
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
  readonly goal?: Goal;
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

/** Whether a row meets its goal; undefined when it has none. */
export function goalMet(row: Row): boolean | undefined {
  const g = row.goal;
  if (!g) return undefined;
  const v = g.of === 'added' ? row.added?.median : row.value.median;
  if (v === undefined || !Number.isFinite(v)) return false;
  return g.cmp === 'le' ? v <= g.value : v >= g.value;
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

/** The results table in GitHub markdown. */
export function renderTable(cases: readonly CaseResult[]): string {
  const lines = [
    '| case | metric | path | median | min … max | vs direct (added: median, min … max) | goal | met |',
    '|---|---|---|---:|---:|---|---|:---:|',
  ];
  for (const c of cases) {
    for (const r of c.rows) {
      const met = goalMet(r);
      lines.push(
        `| ${r.case} | ${r.metric} | ${r.path} | ${fmt(r.value.median)} ${r.unit} | ${fmt(r.value.min)} … ${fmt(r.value.max)} | ${vsBaseline(r)} | ${r.goal?.text ?? ''} | ${met === undefined ? '' : met ? '✓' : '✗'} |`,
      );
    }
  }
  return lines.join('\n');
}

/** Notes of every case, as a bullet list. */
export function renderNotes(cases: readonly CaseResult[]): string {
  return cases.flatMap((c) => c.notes.map((n) => `- **${c.id}. ${c.title}**: ${n}`)).join('\n');
}
