/**
 * `voicegate token` as a user runs it: the printed JWT verifies against the example config's
 * public JWKS with the requested claims, and a bad --ttl is a usage error.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { describe, expect, it } from 'vitest';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { loadSnapshotFromFile } from '../../extproc/adapters/files/config-file.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';

const ROOT = resolve(import.meta.dirname, '../..');

function voicegate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [join(ROOT, 'bin/voicegate.js'), ...args], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

describe('voicegate token', () => {
  it('prints a JWT for alice (team voice, 15 minutes) that the example issuer accepts', async () => {
    const before = Math.floor(Date.now() / 1000);
    const run = await voicegate(['token', '--config', 'examples/voicegate.yaml', '--user', 'alice', '--team', 'voice', '--ttl', '15m']);
    const after = Math.floor(Date.now() / 1000);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = run.stdout.trim();

    const jwks = JSON.parse(await readFile(join(ROOT, 'examples/dev/jwks.json'), 'utf8')) as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: 'https://voicegate.local/dev',
      audience: 'voicegate',
      algorithms: ['ES256'],
    });
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: 'voicegate-dev-es256', typ: 'JWT' });
    expect(payload).toMatchObject({ sub: 'alice', teams: ['voice'], roles: [] });
    expect(payload.iat).toBeGreaterThanOrEqual(before - 1);
    expect(payload.iat).toBeLessThanOrEqual(after + 1);
    expect(payload.exp! - payload.iat!).toBe(900);
    expect(Math.abs(payload.exp! - (before + 900))).toBeLessThanOrEqual(after - before + 2);

    // And the example config's own decision lets her synthesise with it.
    const authorizer = createAuthorizer(new StaticSnapshotSource(await loadSnapshotFromFile(join(ROOT, 'examples/voicegate.yaml'))));
    const decision = await authorizer.check({
      method: 'POST',
      path: '/smallest/waves/v1/lightning-v3.1/get_speech',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(decision).toMatchObject({ kind: 'allow', metadata: { user: 'alice', teams: 'voice', account: 'smallest-tts' } });
  });

  it('several teams and roles, default ttl of one hour', async () => {
    const run = await voicegate(['token', '--config', 'examples/voicegate.yaml', '--user', 'bob', '--team', 'a', '--team', 'b', '--role', 'admin']);
    expect(run.code, run.stderr).toBe(0);
    const jwks = JSON.parse(await readFile(join(ROOT, 'examples/dev/jwks.json'), 'utf8')) as JSONWebKeySet;
    const { payload } = await jwtVerify(run.stdout.trim(), createLocalJWKSet(jwks), { issuer: 'https://voicegate.local/dev', audience: 'voicegate' });
    expect(payload).toMatchObject({ sub: 'bob', teams: ['a', 'b'], roles: ['admin'] });
    expect(payload.exp! - payload.iat!).toBe(3600);
    expect(decodeProtectedHeader(run.stdout.trim()).alg).toBe('ES256');
  });

  it('a bad --ttl (or missing --user) is a usage error: exit 2, nothing on stdout', async () => {
    const bad = [['--ttl', '15x'], ['--ttl', '0'], ['--ttl', '-5m'], ['--ttl', '1.5h']];
    const runs = await Promise.all(bad.map((args) => voicegate(['token', '--config', 'examples/voicegate.yaml', '--user', 'alice', ...args])));
    runs.forEach((run, i) => {
      expect(run.code, bad[i]!.join(' ')).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/--ttl must look like 90s, 15m, 1h or 7d|usage: voicegate token/);
    });
    const noUser = await voicegate(['token', '--config', 'examples/voicegate.yaml']);
    expect(noUser.code).toBe(2);
    expect(noUser.stderr).toContain('--user');
  });
});
