/** `voicegate usage`: the roll-ups as a table, or JSON with --json. */
import pg from 'pg';
import { formatUsageTable, parseSince, queryUsage } from '../../adapters/postgres/usage-query.ts';
import { defineCommand, report } from '../command.ts';
import { DATABASE_CONNECT_TIMEOUT_MS } from '../usage-pipeline.ts';
import { USAGE_OPTIONS } from '../options.ts';

export const usageCommand = defineCommand('print usage and cost roll-ups from PostgreSQL', USAGE_OPTIONS, async (o, ctx) => {
  let since: string;
  try {
    since = parseSince(o.since);
  } catch (err) {
    report(ctx, (err as Error).message);
    return 2;
  }
  const pool = new pg.Pool({ connectionString: o.database, max: 1, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS });
  pool.on('error', () => undefined);
  try {
    const rows = await queryUsage(pool, o.by, since);
    ctx.stdout(`${o.json ? JSON.stringify({ by: o.by, since, rows }, null, 2) : formatUsageTable(o.by, rows)}\n`);
    return 0;
  } catch (err) {
    // A database the aggregator never migrated has no roll-up tables: nothing was recorded yet.
    if ((err as { code?: unknown }).code === '42P01') {
      ctx.stdout(o.json ? `${JSON.stringify({ by: o.by, since, rows: [] }, null, 2)}\n` : 'no usage recorded yet\n');
      return 0;
    }
    report(ctx, (err as Error).message);
    return 1;
  } finally {
    await pool.end();
  }
});
