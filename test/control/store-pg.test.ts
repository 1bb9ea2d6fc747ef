/**
 * The ControlStore contract on the machine's PostgreSQL (127.0.0.1:5432, a fresh database per
 * run), plus what only a server can show: migrators racing on separate connections, and the
 * control schema living beside the usage schema in one database.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateControl } from '../../extproc/adapters/control-store/migrations.ts';
import { PgQueryRunner } from '../../extproc/adapters/control-store/pg-runner.ts';
import { migrate as migrateUsage } from '../../extproc/adapters/postgres/migrations.ts';
import { freshDatabase } from '../usage/helpers.ts';
import { storeContract } from './store-contract.ts';

/**
 * freshDatabase's drop uses DROP DATABASE … WITH (FORCE), whose termination (57P01) can reach a
 * pooled connection that is still closing; that one error is expected at teardown, no other.
 */
async function fresh(): ReturnType<typeof freshDatabase> {
  const d = await freshDatabase();
  d.pool.on('error', (err: Error & { code?: string }) => {
    if (err.code !== '57P01') throw err;
  });
  return d;
}

let db: Awaited<ReturnType<typeof freshDatabase>>;
let runner: PgQueryRunner;

beforeAll(async () => {
  db = await fresh();
  runner = new PgQueryRunner(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

storeContract('PostgreSQL', () => ({ runner }));

describe('control migrations on PostgreSQL', () => {
  let other: Awaited<ReturnType<typeof freshDatabase>>;
  beforeAll(async () => {
    other = await fresh();
  });
  afterAll(async () => {
    await other?.drop();
  });

  it('four migrators starting together on separate connections apply each version exactly once', async () => {
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: other.url, max: 1 }));
    try {
      const results = await Promise.all(pools.map((p) => migrateControl(new PgQueryRunner(p))));
      expect(results.flat().sort()).toEqual([1, 2]);
      const { rows } = await other.pool.query('SELECT version FROM control.schema_migrations ORDER BY version');
      expect(rows).toEqual([{ version: 1 }, { version: 2 }]);
      expect(await migrateControl(new PgQueryRunner(other.pool))).toEqual([]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('the usage schema and the control schema share one database, each with its own applied versions', async () => {
    const applied = await migrateUsage(other.pool);
    expect(applied).toEqual([1]);
    const { rows } = await other.pool.query<{ schema: string; table: string }>(
      `SELECT table_schema AS schema, table_name AS table FROM information_schema.tables
        WHERE table_name = 'schema_migrations' ORDER BY 1`,
    );
    expect(rows).toEqual([{ schema: 'control', table: 'schema_migrations' }, { schema: 'public', table: 'schema_migrations' }]);
    expect(await migrateControl(new PgQueryRunner(other.pool))).toEqual([]);
    expect(await migrateUsage(other.pool)).toEqual([]);
  });
});
