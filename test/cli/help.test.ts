/**
 * `--help` against the parser: every flag a command's help prints is one its parser accepts, every
 * flag its schema defines is printed, and a flag it does not know is refused with exit 2, naming it.
 */
import { describe, expect, it } from 'vitest';
import { extensions } from '../../dev/wiring.ts';
import { COMMANDS, main } from '../../extproc/main/main.ts';
import type { Flag } from '../../extproc/main/flags.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function voicegate(args: string[], ext = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, new AbortController().signal, { ...ext, env: {}, stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

/** A value the flag's own schema accepts (its default, or one of the placeholder's kind). */
function sample(f: Flag<unknown>): string[] {
  if (f.value === undefined) return [`--${f.flag}`];
  const byKind: Record<string, string> = { PORT: '0', N: '7', MS: '250', 'UID:GID': '1000:1000', SUBJECT: 'user:alice', 'N|none': '600' };
  const fallback = f.fallback !== undefined && !Array.isArray(f.fallback) ? String(f.fallback) : undefined;
  return [`--${f.flag}`, fallback ?? byKind[f.value] ?? 'x'];
}

const names = Object.keys(COMMANDS);

describe('voicegate --help', () => {
  it('lists every command, the development ones with the dev wiring', async () => {
    const plain = await voicegate(['--help']);
    expect(plain.code).toBe(0);
    for (const name of names) expect(plain.stdout).toMatch(new RegExp(`^  ${name} +\\S`, 'm'));
    expect(plain.stdout).not.toMatch(/^ {2}simulator /m);
    const dev = await voicegate(['--help'], extensions);
    expect(dev.stdout).toMatch(/^ {2}simulator +a local simulator/m);
  });

  it.each(names)('%s: every printed flag is accepted, every defined flag is printed', async (name) => {
    const help = await voicegate([name, '--help']);
    expect(help.code).toBe(0);
    const printed = new Set([...help.stdout.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]!));
    const schema = Object.values(COMMANDS[name]!.options!);
    expect([...printed].sort()).toEqual(schema.map((f) => f.flag).sort());
    for (const f of schema) if (f.env) expect(help.stdout).toContain(f.env);

    // All of them at once, each with a value of its kind.
    const args = schema.flatMap(sample);
    const { parseOptions } = await import('../../extproc/main/parse.ts');
    const parsed = parseOptions(COMMANDS[name]!.options!, args, {});
    expect(parsed, JSON.stringify(args)).toMatchObject({ ok: true });
  });

  it.each(names)('%s: an unknown flag exits 2 with one line naming it and the usage line', async (name) => {
    const run = await voicegate([name, '--frobnicate', 'x']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^voicegate ${name}: .*'--frobnicate'`));
    expect(lines[1]).toMatch(new RegExp(`^usage: voicegate ${name} `));
  });

  it('an unknown command exits 2; a missing required flag names it and its variable', async () => {
    const unknown = await voicegate(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const agg = await voicegate(['aggregator']);
    expect(agg.code).toBe(2);
    expect(agg.stderr.split('\n')[0]).toBe('voicegate aggregator: --nats is required (or set NATS_URL); --database is required (or set DATABASE_URL)');
  });
});
