import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KekConfigError } from '../../core/control/errors.ts';
import { ensureDevKek } from './dev-kek.ts';
import { keyringFromEnv } from './kek-source.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vg-kek-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const binding = { accountId: 'a', version: 1 };

describe('development KEK', () => {
  it('is created once with mode 0600, announced with a warning, and reused on the next start', async () => {
    const dir = join(tmp, 'state');
    const first = await ensureDevKek(dir);
    expect(first.created).toBe(true);
    expect(first.path).toBe(join(dir, 'kek'));
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    expect(first.warning).toMatch(/generated a development key-encryption key .*VOICEGATE_KEK/);
    const text = readFileSync(first.path, 'utf8');
    expect(first.warning).not.toContain(text.trim().split(':')[1]!);

    const second = await ensureDevKek(dir);
    expect(second.created).toBe(false);
    expect(second.warning).toMatch(/^using the development key-encryption key/);
    expect(readFileSync(first.path, 'utf8')).toBe(text);
    expect(second.keyring.open(first.keyring.seal('sk_test_token', binding), binding)).toBe('sk_test_token');
  });

  it('a KEK file others can read is refused', async () => {
    const dir = join(tmp, 'loose');
    const { path } = await ensureDevKek(dir);
    chmodSync(path, 0o644);
    await expect(ensureDevKek(dir)).rejects.toThrow(/readable by group or others.*chmod 600/);
  });
});

describe('VOICEGATE_KEK', () => {
  it('inline list, file: reference, unset', async () => {
    const key = randomBytes(32).toString('base64');
    expect((await keyringFromEnv({ VOICEGATE_KEK: `k2:${key},k1:${randomBytes(32).toString('base64')}` }))!.kekIds).toEqual(['k2', 'k1']);
    const file = join(tmp, 'kek.yaml');
    writeFileSync(file, `keys:\n  - id: prod-2025\n    key: ${key}\n`, { mode: 0o600 });
    expect((await keyringFromEnv({ VOICEGATE_KEK: `file:${file}` }))!.currentKekId).toBe('prod-2025');
    expect(await keyringFromEnv({})).toBeUndefined();
    await expect(keyringFromEnv({ VOICEGATE_KEK: `file:${join(tmp, 'missing')}` })).rejects.toBeInstanceOf(KekConfigError);
    const err = await keyringFromEnv({ VOICEGATE_KEK: `k1:${key.slice(0, 20)}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KekConfigError);
    expect((err as Error).message).not.toContain(key.slice(0, 20));
  });
});
