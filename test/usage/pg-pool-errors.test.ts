/** Issue 10 point 1: an idle PostgreSQL connection that dies (server restarted) must not end the process. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createUsagePipeline } from '../../extproc/main/usage-pipeline.ts';
import { eventually, freshDatabase, uniqueName } from './helpers.ts';

const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

describe('the in-process aggregator pool', () => {
  it('logs and survives its idle connections being terminated', async () => {
    const db = await freshDatabase();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const p = await createUsagePipeline({
      natsUrl: NATS_URL,
      databaseUrl: db.url,
      spoolDir: mkdtempSync(join(tmpdir(), 'vg-pgerr-')),
      logger,
      stream: uniqueName('VG_PGERR'),
      subjectPrefix: uniqueName('vg.pgerr'),
      durable: uniqueName('agg'),
    });
    try {
      await eventually(() => lines.some((l) => l.includes('in-process usage aggregator running')), 20_000, 'aggregator running');
      const dbName = new URL(db.url).pathname.slice(1);
      const admin = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
      await admin.connect();
      try {
        await eventually(async () => {
          const r = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [dbName]);
          return (r.rowCount ?? 0) > 0;
        }, 10_000, 'a connection to terminate');
      } finally {
        await admin.end();
      }
      await eventually(() => lines.some((l) => l.includes('PostgreSQL connection lost')), 5000, 'the pool error logged');
      expect(lines.some((l) => l.includes('PostgreSQL connection lost'))).toBe(true);
    } finally {
      await p.close();
      await db.drop();
    }
  });
});
