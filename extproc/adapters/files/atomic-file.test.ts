import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileIfExists, writeFileAtomic } from './atomic-file.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-atomic-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('creates missing folders, writes owner-only, replaces whole, leaves no temporary file', async () => {
    const path = join(dir, 'nested', 'snapshot.enc');
    expect(await readFileIfExists(path)).toBeUndefined();
    await writeFileAtomic(path, 'first');
    await writeFileAtomic(path, 'second, longer than the first');
    expect(await readFileIfExists(path)).toBe('second, longer than the first');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, 'nested'))).toEqual(['snapshot.enc']);
  });

  it('replaces a loose file with an owner-only one', async () => {
    const path = join(dir, 'copy.enc');
    await writeFile(path, 'old', { mode: 0o644 });
    await writeFileAtomic(path, 'new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFileIfExists(path)).toBe('new');
  });
});
