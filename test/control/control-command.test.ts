/**
 * `voicegate control` in process: PGlite under a temporary --data-dir with a development KEK,
 * the bootstrap key printed once (and not on the next start), the admin API served on loopback,
 * a non-loopback plaintext bind refused.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../extproc/main/main.ts';

const dir = mkdtempSync(join(tmpdir(), 'vg-control-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  stdout: string[];
  stderr: string[];
  url: Promise<string>;
  done: Promise<number>;
  stop(): Promise<number>;
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const ac = new AbortController();
  const stdout: string[] = [];
  const stderr: string[] = [];
  let gotUrl!: (u: string) => void;
  const url = new Promise<string>((r) => (gotUrl = r));
  const code = main(['control', ...args], ac.signal, {
    env,
    stdout: (s) => void stdout.push(s),
    stderr: (s) => {
      stderr.push(s);
      const m = /admin API on (http:\/\/[^\s]+)\/admin\/v1 /.exec(s);
      if (m) gotUrl(m[1]!);
    },
  });
  void code.then(() => gotUrl(''));
  return { stdout, stderr, url, done: code, stop: async () => (ac.abort(), code) };
}

describe('voicegate control', () => {
  const dataDir = join(dir, 'state', 'control');
  const args = ['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--config', 'examples/voicegate.yaml'];

  it('prints the bootstrap key once, serves the API with it, and never prints it again', async () => {
    const first = run(args);
    const url = await first.url;
    expect(url, first.stderr.join('')).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const out = first.stdout.join('');
    const key = /\b(vg_[A-Za-z0-9_-]{43})\b/.exec(out)?.[1];
    expect(key, out).toBeDefined();
    expect(out).toContain('shown this once');
    expect(first.stderr.join('')).toContain('development key-encryption key');
    expect(first.stderr.join('')).not.toContain(key!);
    expect(statSync(join(dir, 'state', 'kek')).mode & 0o777).toBe(0o600);

    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await fetch(`${url}/admin/v1/openapi.json`)).status).toBe(200);
    expect((await fetch(`${url}/admin/v1/accounts`)).status).toBe(401);
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const created = await fetch(`${url}/admin/v1/accounts`, { method: 'POST', headers: auth, body: JSON.stringify({ name: 'smallest-tts', token: 'sk_command_test_0123456789' }) });
    expect(created.status).toBe(201);
    // apply resolves file: references against the --config file's folder (examples/dev/…).
    const applied = await fetch(`${url}/admin/v1/apply?dry_run=true`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/yaml' },
      body: 'accounts:\n  - { name: smallest-tts, token: file:dev/smallest-tts.key }\n',
    });
    expect(applied.status, await applied.clone().text()).toBe(200);
    expect(await first.stop()).toBe(0);

    const second = run(args);
    const url2 = await second.url;
    expect(url2).toMatch(/^http:/);
    expect(second.stdout.join('')).not.toMatch(/vg_/);
    const again = await fetch(`${url2}/admin/v1/accounts/smallest-tts`, { headers: { authorization: `Bearer ${key}` } });
    expect(again.status).toBe(200);
    expect(await second.stop()).toBe(0);
  });

  it('refuses a plaintext non-loopback bind unless --insecure, and PostgreSQL without VOICEGATE_KEK', async () => {
    const r = run(['--listen', '0.0.0.0:0', '--data-dir', join(dir, 'other', 'control'), '--bootstrap', 'off']);
    expect(await r.done).toBe(2);
    expect(r.stderr.join('')).toContain('refusing to serve the admin API without TLS');
    const p = run(['--listen', '127.0.0.1:0', '--database', 'postgres://127.0.0.1:5432/none']);
    expect(await p.done).toBe(2);
    expect(p.stderr.join('')).toContain('VOICEGATE_KEK');
  });
});
