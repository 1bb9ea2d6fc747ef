/**
 * The two ways to get a migrated control store, for the composition root: over a `pg` pool
 * (DATABASE_URL) or on an embedded PGlite (`dataDir` on disk, or in memory when omitted).
 */
import { PGlite } from '@electric-sql/pglite';
import type { Pool } from 'pg';
import type { Keyring } from '../../core/control/envelope.ts';
import type { ControlStore } from '../../core/control/store.ts';
import { migrateControl } from './migrations.ts';
import { PgQueryRunner } from './pg-runner.ts';
import { PgliteQueryRunner } from './pglite-runner.ts';
import { SqlControlStore } from './sql-store.ts';

export interface OpenedControlStore {
  readonly store: ControlStore;
  /** Migration versions applied by this open. */
  readonly applied: readonly number[];
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly keyring: Keyring;
  readonly now?: () => Date;
}

/** On PostgreSQL; the pool stays the caller's to end. */
export async function openPgControlStore(pool: Pool, options: OpenOptions): Promise<OpenedControlStore> {
  const runner = new PgQueryRunner(pool);
  const applied = await migrateControl(runner);
  return { store: new SqlControlStore(runner, options), applied, close: () => runner.close() };
}

/** On PGlite: `dataDir` persists (e.g. `.voicegate/pglite`); without it the database lives in memory. */
export async function openPgliteControlStore(options: OpenOptions & { readonly dataDir?: string }): Promise<OpenedControlStore> {
  const db = await PGlite.create(options.dataDir === undefined ? {} : { dataDir: options.dataDir });
  const runner = new PgliteQueryRunner(db, true);
  try {
    const applied = await migrateControl(runner);
    return { store: new SqlControlStore(runner, options), applied, close: () => runner.close() };
  } catch (err) {
    await runner.close();
    throw err;
  }
}
