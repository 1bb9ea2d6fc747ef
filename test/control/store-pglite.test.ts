/** The ControlStore contract on PGlite (in memory), the embedded default's engine, and its data directory. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { openPgliteControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { PgliteQueryRunner } from '../../extproc/adapters/control-store/pglite-runner.ts';
import { storeContract } from './store-contract.ts';

let runner: PgliteQueryRunner;

beforeAll(async () => {
  runner = new PgliteQueryRunner(await PGlite.create(), true);
});
afterAll(async () => {
  await runner?.close();
});

storeContract('PGlite', () => ({ runner }));

describe('PGlite on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vg-pglite-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the configuration and its sealed token across a restart, migrating only once', async () => {
    const keyring = new Keyring([{ id: 'dev', key: new Uint8Array(randomBytes(32)) }]);
    const dataDir = join(dir, 'pglite');
    const first = await openPgliteControlStore({ keyring, dataDir });
    expect(first.applied).toEqual([1]);
    await first.store.createAccount({ name: 'smallest-tts', token: 'sk_disk_0123456789abcdef' }, { actor: 'system:test' });
    const revision = await first.store.currentRevision();
    await first.close();

    const again = await openPgliteControlStore({ keyring, dataDir });
    try {
      expect(again.applied).toEqual([]);
      expect(await again.store.currentRevision()).toBe(revision);
      const sealed = (await again.store.loadConfiguration()).accounts[0]!.sealedSecret!;
      expect(keyring.open(sealed, sealed)).toBe('sk_disk_0123456789abcdef');
    } finally {
      await again.close();
    }
  });
});
