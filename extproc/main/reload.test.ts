import { mkdtemp, readFile, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadSnapshotFromFile } from '../adapters/files/config-file.ts';
import { reloadInto } from './reload.ts';
import { StaticSnapshotSource } from '../core/config/snapshot.ts';

const silent = pino({ level: 'silent' });

async function exampleCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vg-reload-'));
  await cp('examples', dir, { recursive: true });
  return join(dir, 'voicegate.yaml');
}

describe('config reload', () => {
  it('swaps in a valid edited file and keeps the old snapshot when the edit is broken', async () => {
    const path = await exampleCopy();
    const source = new StaticSnapshotSource(await loadSnapshotFromFile(path));
    expect(source.current()?.accounts.get('smallest-tts')?.users.has('bob')).toBe(false);

    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('collaborators: { teams: [voice, studio] }', 'collaborators: { users: [bob], teams: [voice, studio] }'));
    expect(await reloadInto(source, path, silent)).toBe(true);
    const edited = source.current();
    expect(edited?.accounts.get('smallest-tts')?.users.has('bob')).toBe(true);

    await writeFile(path, text.replace('token: file:dev/smallest-tts.key', 'token: env:VG_RELOAD_TEST_UNSET'));
    expect(await reloadInto(source, path, silent)).toBe(false);
    expect(source.current()).toBe(edited);
  });

  it('never swaps in an older snapshot', () => {
    const source = new StaticSnapshotSource();
    const base = { origin: 't', issuers: [], providers: new Map(), accounts: new Map(), models: new Map(), defaultModels: new Map(), maxDecisionBodyBytes: 1024 };
    expect(source.swap({ ...base, version: 2 })).toBe(true);
    expect(source.swap({ ...base, version: 1 })).toBe(false);
    expect(source.current()?.version).toBe(2);
  });
});
