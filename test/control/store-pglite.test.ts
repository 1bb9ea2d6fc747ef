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
import { CONTROL_MIGRATIONS, migrateControl } from '../../extproc/adapters/control-store/migrations.ts';
import { SqlControlStore } from '../../extproc/adapters/control-store/sql-store.ts';
import { storeContract } from './store-contract.ts';

let runner: PgliteQueryRunner;

beforeAll(async () => {
  runner = new PgliteQueryRunner(await PGlite.create(), true);
});
afterAll(async () => {
  await runner?.close();
});

storeContract('PGlite', () => ({ runner }));

describe('upgrading a version-1 store', () => {
  it('applies only version 2; existing models have no bound until one is set', async () => {
    const old = new PgliteQueryRunner(await PGlite.create(), true);
    try {
      expect(await migrateControl(old, CONTROL_MIGRATIONS.filter((m) => m.version === 1))).toEqual([1]);
      // A model written by the version-1 code, whose table has no max_session_seconds yet.
      await old.transaction(async (sql) => {
        await sql.query(`INSERT INTO control.accounts (id, name, provider, concurrency_units, created_at, updated_at)
                         VALUES ('00000000-0000-4000-8000-000000000001', 'legacy', 'smallest', 1, now(), now())`);
        await sql.query(`INSERT INTO control.models (id, account_id, model_id, type, created_at, updated_at)
                         VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'pulse', 'stt', now(), now())`);
      });
      expect(await migrateControl(old)).toEqual([2]);
      const store = new SqlControlStore(old, { keyring: new Keyring([{ id: 'k', key: new Uint8Array(randomBytes(32)) }]) });
      expect(await store.getModel('legacy', 'pulse')).toMatchObject({ modelId: 'pulse', maxSessionSeconds: null, version: 1 });
      expect(await store.updateModel('legacy', 'pulse', { maxSessionSeconds: 900 }, 1, { actor: 'system:test' })).toMatchObject({ maxSessionSeconds: 900 });
    } finally {
      await old.close();
    }
  });
});

describe('PGlite on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vg-pglite-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the configuration and its sealed token across a restart, migrating only once', async () => {
    const keyring = new Keyring([{ id: 'dev', key: new Uint8Array(randomBytes(32)) }]);
    const dataDir = join(dir, 'pglite');
    const first = await openPgliteControlStore({ keyring, dataDir });
    expect(first.applied).toEqual([1, 2]);
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
