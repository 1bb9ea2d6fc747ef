import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../extproc/main/main.ts';

function voicegate(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/voicegate.js', ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('voicegate command line', () => {
  it('lists every command and exits 0 on --help', () => {
    const r = voicegate('--help');
    expect(r.code).toBe(0);
    for (const name of Object.keys(COMMANDS)) expect(r.stdout).toContain(`  ${name} `);
  });

  it.each(['extproc', 'aggregator', 'simulator'])('prints the options of %s on --help and exits 0', (name) => {
    const r = voicegate(name, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`usage: voicegate ${name} ${COMMANDS[name]!.synopsis}`);
  });

  it('rejects an unknown command and an unknown option with exit 2 and no stack trace', () => {
    const unknown = voicegate('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badOption = voicegate('usage', '--bogus');
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain("Unknown option '--bogus'");
    expect(badOption.stderr).not.toMatch(/\n\s+at /);
  });
});
