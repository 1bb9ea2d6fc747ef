/**
 * The admin API contract on the machine's PostgreSQL (a fresh database per run), and the usage
 * roll-ups read through `GET /admin/v1/usage` from the same database.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminApp, type AdminApp } from '../../extproc/adapters/admin-api/app.ts';
import { bootstrapAdmin } from '../../extproc/adapters/admin-api/bootstrap.ts';
import { openPgControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { migrate as migrateUsage } from '../../extproc/adapters/postgres/migrations.ts';
import { queryUsageBetween } from '../../extproc/adapters/postgres/usage-query.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import { freshDatabase } from '../usage/helpers.ts';
import { adminApiSuite } from './admin-api-suite.ts';

const keyring = () => new Keyring([{ id: 'k1', key: new Uint8Array(randomBytes(32)) }]);

async function fresh(): ReturnType<typeof freshDatabase> {
  const d = await freshDatabase();
  // DROP DATABASE … WITH (FORCE) at teardown terminates idle pooled connections (57P01).
  d.pool.on('error', (err: Error & { code?: string }) => {
    if (err.code !== '57P01') throw err;
  });
  return d;
}

adminApiSuite('PostgreSQL', async () => {
  const db = await fresh();
  const kek = keyring();
  const opened = await openPgControlStore(db.pool, { keyring: kek });
  return { store: opened.store, kek, close: async () => { await opened.close(); await db.drop(); } };
});

describe('GET /admin/v1/usage on PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let app: AdminApp;
  let key: string;
  beforeAll(async () => {
    db = await fresh();
    await migrateUsage(db.pool);
    const { store } = await openPgControlStore(db.pool, { keyring: keyring() });
    key = (await bootstrapAdmin(store))!.key;
    await db.pool.query(
      `INSERT INTO usage_daily (day, user_name, provider, model, account, requests, characters, audio_seconds, cost_usd) VALUES
        ('2026-01-01', 'alice', 'smallest', 'lightning-v3.1', 'a', 2, 100, 0, 0.005),
        ('2026-01-02', 'alice', 'smallest', 'lightning-v3.1', 'a', 1, 50, 0, 0.0025),
        ('2026-01-05', 'bob', 'smallest', 'pulse', 'a', 1, 0, 60.5, 0.01)`,
    );
    app = createAdminApp({
      store,
      verifier: { verify: async () => ({ ok: false, code: 'malformed_token', message: 'no JWTs here' }) },
      usage: ({ by, from, to }) => queryUsageBetween(db.pool, by, from, to),
    });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('sums the roll-ups of the days asked, with decimal strings', async () => {
    const get = async (q: string) => {
      const res = await app.request(`/admin/v1/usage?${q}`, { headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, body: (await res.json()) as { rows: unknown[] } };
    };
    const users = await get('by=user&from=2026-01-01&to=2026-01-02');
    expect(users.status).toBe(200);
    expect(users.body.rows).toEqual([{ key: 'alice', requests: 3, errors: 0, characters: 150, audio_seconds: '0', cost: '0.0075' }]);
    const models = await get('by=model&from=2026-01-01&to=2026-01-31');
    expect(models.body.rows).toEqual([
      { key: 'smallest/pulse', requests: 1, errors: 0, characters: 0, audio_seconds: '60.5', cost: '0.01' },
      { key: 'smallest/lightning-v3.1', requests: 3, errors: 0, characters: 150, audio_seconds: '0', cost: '0.0075' },
    ]);
    expect((await get('from=2026-02-01&to=2026-01-01')).status).toBe(400);
    expect((await get('from=yesterday')).status).toBe(400);
  });
});
