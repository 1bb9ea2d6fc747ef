/**
 * `node bin/run-ts.js bench/profile-top.ts FILE.cpuprofile [--top 25]` — the functions with the
 * most self time in a V8 CPU profile (as written by `node --cpu-prof`, e.g. `npm run bench --
 * --cpu-prof`), so a profile can be read without a browser.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from './config.ts';

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
      children: z.array(z.number()).optional(),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});

export interface SelfTime {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  readonly share: number;
}

/** Self time per function (summed over every node with the same name and location), largest first. */
export function topSelfTime(profileJson: unknown, top: number): { totalMs: number; rows: SelfTime[] } {
  const p = profileSchema.parse(profileJson);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    const dt = p.timeDeltas[i] ?? 0;
    if (!node) continue;
    total += dt;
    const f = node.callFrame;
    const where = f.url ? `${relative(REPO_ROOT, f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}@${where}`;
    const e = self.get(key) ?? { name: f.functionName || '(anonymous)', where, us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const rows = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, share: total ? e.us / total : 0 }));
  return { totalMs: total / 1000, rows };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const file = process.argv[2];
  const topArg = process.argv.indexOf('--top');
  const top = topArg > 0 ? Number(process.argv[topArg + 1]) : 25;
  if (!file) {
    process.stderr.write('usage: node bin/run-ts.js bench/profile-top.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const { totalMs, rows } = topSelfTime(JSON.parse(readFileSync(file, 'utf8')), top);
  process.stdout.write(`total sampled: ${totalMs.toFixed(0)} ms\n| self ms | share | function | where |\n|---:|---:|---|---|\n`);
  for (const r of rows) process.stdout.write(`| ${r.ms.toFixed(1)} | ${(r.share * 100).toFixed(1)} % | ${r.name} | ${r.where} |\n`);
}
