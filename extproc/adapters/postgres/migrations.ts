/**
 * Versioned schema of the usage tables. Each migration runs once, in a transaction, under a
 * PostgreSQL advisory lock so that several aggregators starting together apply it once.
 * Append new migrations; never edit an applied one.
 */
import type { Pool } from 'pg';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const ROLLUP_COLUMNS = `
  requests      bigint         NOT NULL DEFAULT 0,
  errors        bigint         NOT NULL DEFAULT 0,
  characters    bigint         NOT NULL DEFAULT 0,
  audio_seconds numeric(20,6)  NOT NULL DEFAULT 0,
  cost_usd      numeric(30,12) NOT NULL DEFAULT 0,
  estimated     bigint         NOT NULL DEFAULT 0`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'usage spans and daily roll-ups',
    sql: `
CREATE TABLE usage_spans (
  span_id             text PRIMARY KEY,
  trace_id            text NOT NULL,
  day                 date NOT NULL,
  start_time          timestamptz NOT NULL,
  end_time            timestamptz NOT NULL,
  duration_ms         double precision NOT NULL,
  status              integer NOT NULL,
  close_code          integer,
  decision            text NOT NULL,
  user_name           text NOT NULL,
  teams               text[] NOT NULL,
  provider            text NOT NULL,
  model               text NOT NULL,
  model_type          text NOT NULL,
  account             text NOT NULL,
  route_kind          text NOT NULL,
  endpoint            text NOT NULL,
  request_id          text NOT NULL,
  provider_request_id text NOT NULL,
  bytes_in            bigint NOT NULL,
  bytes_out           bigint NOT NULL,
  characters          bigint,
  audio_seconds       numeric(20,6),
  estimated           boolean NOT NULL,
  cost_usd            numeric(30,12) NOT NULL,
  is_error            boolean NOT NULL,
  error               text NOT NULL,
  config_version      bigint NOT NULL,
  source              text NOT NULL,
  span                jsonb NOT NULL,
  received_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_spans_start_time ON usage_spans (start_time);
CREATE INDEX usage_spans_user_day ON usage_spans (user_name, day);

-- One row per day x user x provider x model x account.
CREATE TABLE usage_daily (
  day       date NOT NULL,
  user_name text NOT NULL,
  provider  text NOT NULL,
  model     text NOT NULL,
  account   text NOT NULL,${ROLLUP_COLUMNS},
  PRIMARY KEY (day, user_name, provider, model, account)
);

-- One row per day x team x provider x model x account. A span whose user is in several teams is
-- counted once in each of them (team totals may exceed the overall total); '' = no team.
CREATE TABLE usage_team_daily (
  day       date NOT NULL,
  team      text NOT NULL,
  provider  text NOT NULL,
  model     text NOT NULL,
  account   text NOT NULL,${ROLLUP_COLUMNS},
  PRIMARY KEY (day, team, provider, model, account)
);
`,
  },
];

/** Arbitrary constant naming the migration lock ("vgusage"). */
const LOCK_KEY = 0x7667_7573;

/** Applies pending migrations; returns the versions applied now. */
export async function migrate(pool: Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => r.version));
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
