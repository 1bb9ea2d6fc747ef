/**
 * The README's "Denials" table lists exactly the codes a client can receive, each with its status
 * and with *(edge)* exactly on the codes only the embedded edge writes: compared both ways with
 * DENIALS, so neither can gain or lose a code alone.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DENIALS, EXCHANGE_FAILURES, type DenialCode } from '../../extproc/core/decision/denials.ts';

interface Documented {
  readonly status: number;
  readonly via: 'deny' | 'edge';
}

/** code → status and writer, from the first table under `### Denials`; throws on a code listed twice. */
function readmeDenials(markdown: string): Map<string, Documented> {
  const start = markdown.indexOf('\n### Denials\n');
  if (start === -1) throw new Error('README has no "### Denials" section');
  const rest = markdown.slice(start + 1);
  const next = rest.slice(1).search(/\n#{2,3} /);
  const section = next === -1 ? rest : rest.slice(0, next + 1);
  const rows = section.split('\n').filter((l) => /^\|\s*\d{3}/.test(l));
  if (rows.length === 0) throw new Error('the Denials section has no table rows');
  const out = new Map<string, Documented>();
  for (const row of rows) {
    const cells = row.split('|').slice(1, -1);
    const statusCell = cells[0] ?? '';
    const status = Number(/\d{3}/.exec(statusCell)?.[0]);
    const via = /\(edge\)/.test(statusCell) ? 'edge' : 'deny';
    for (const [, code] of (cells[1] ?? '').matchAll(/`([^`]+)`/g)) {
      if (out.has(code!)) throw new Error(`README lists ${code} twice`);
      out.set(code!, { status, via });
    }
  }
  return out;
}

describe('README denial table', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const documented = readmeDenials(readme);

  it('documents every code a client can receive, with its status and writer', () => {
    const missing = (Object.keys(DENIALS) as DenialCode[]).filter((code) => {
      const d = documented.get(code);
      return !d || d.status !== DENIALS[code].status || d.via !== DENIALS[code].via;
    });
    expect(missing).toEqual([]);
  });

  it('documents no code the gateway does not send', () => {
    expect([...documented.keys()].filter((code) => !Object.hasOwn(DENIALS, code))).toEqual([]);
  });

  it('keeps span-only failures out of the client-facing codes', () => {
    for (const f of EXCHANGE_FAILURES) {
      expect(Object.hasOwn(DENIALS, f), f).toBe(false);
      expect(documented.has(f), f).toBe(false);
    }
  });

  it('reads the table the way the checks above assume (a wrong status or a missing row is caught)', () => {
    const broken = readme.replace('| 413 | `body_too_large` |', '| 400 | `body_too_large` |').replace(/\| 500 \(edge\) \|[^\n]*\n/, '');
    const parsed = readmeDenials(broken);
    expect(parsed.get('body_too_large')?.status).toBe(400);
    expect(parsed.has('internal_error')).toBe(false);
    expect(documented.get('upstream_timeout')).toEqual({ status: 504, via: 'edge' });
  });
});
