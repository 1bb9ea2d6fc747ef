/**
 * Versioned schema of the control plane, one set for PostgreSQL and PGlite. Everything lives in
 * the `control` schema, including its own table of applied versions, so the usage tables
 * (public.schema_migrations, usage_*) and the control tables share a database without clashing.
 * Append new migrations; never edit an applied one.
 *
 * Names are `COLLATE "C"`: byte order is the same on every server and on PGlite, so keyset
 * pagination pages identically everywhere, and uniqueness is exact (as in the YAML config).
 */
import type { QueryRunner } from './query-runner.ts';

export interface ControlMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const VERSIONED = `
  row_version integer     NOT NULL DEFAULT 1 CHECK (row_version >= 1),
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL`;

export const CONTROL_MIGRATIONS: readonly ControlMigration[] = [
  {
    version: 1,
    name: 'control plane: accounts, secrets, collaborators, models, teams, service keys, audit, revisions',
    sql: `
-- One row: the configuration revision, bumped (and locked) by every committed change.
CREATE TABLE control.state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  revision  bigint  NOT NULL CHECK (revision >= 0)
);
INSERT INTO control.state (singleton, revision) VALUES (true, 0);

CREATE TABLE control.revisions (
  revision     bigint      PRIMARY KEY,
  committed_at timestamptz NOT NULL,
  actor        text        NOT NULL,
  summary      text        NOT NULL
);

CREATE TABLE control.accounts (
  id                uuid    PRIMARY KEY,
  name              text    COLLATE "C" NOT NULL CONSTRAINT accounts_name_key UNIQUE,
  provider          text    COLLATE "C" NOT NULL,
  base_url          text,
  concurrency_units integer NOT NULL CHECK (concurrency_units BETWEEN 1 AND 10000),
  ws_per_unit       integer NOT NULL DEFAULT 5 CHECK (ws_per_unit BETWEEN 1 AND 100),${VERSIONED}
);

-- The current sealed token of an account (envelope.ts); a rotation replaces the row and
-- increments secret_version, which is part of the ciphertext's associated data.
CREATE TABLE control.account_secrets (
  account_id     uuid        PRIMARY KEY REFERENCES control.accounts (id) ON DELETE CASCADE,
  secret_version integer     NOT NULL CHECK (secret_version >= 1),
  algorithm      text        NOT NULL,
  kek_id         text        NOT NULL,
  wrapped_key    bytea       NOT NULL,
  ciphertext     bytea       NOT NULL,
  last4          text,
  fingerprint    text        NOT NULL,
  updated_at     timestamptz NOT NULL
);
CREATE INDEX account_secrets_kek ON control.account_secrets (kek_id);

CREATE TABLE control.collaborators (
  account_id uuid NOT NULL REFERENCES control.accounts (id) ON DELETE CASCADE,
  subject    text COLLATE "C" NOT NULL CHECK (subject ~ '^(user|team|service):.+'),
  role       text NOT NULL CHECK (role IN ('manager', 'user')),${VERSIONED},
  CONSTRAINT collaborators_pkey PRIMARY KEY (account_id, subject)
);
CREATE INDEX collaborators_subject ON control.collaborators (subject);

-- A model id may be registered on several accounts (the limits issue spreads load over them),
-- once per account.
CREATE TABLE control.models (
  id         uuid PRIMARY KEY,
  account_id uuid NOT NULL REFERENCES control.accounts (id) ON DELETE CASCADE,
  model_id   text COLLATE "C" NOT NULL,
  type       text NOT NULL CHECK (type IN ('tts', 'stt')),
  aliases    text[] COLLATE "C" NOT NULL DEFAULT '{}',
  -- The YAML price shape (per_1k_chars, per_minute, per_minute_streaming); numeric keeps the
  -- operator's digits exactly (read back with ::text).
  price_per_1k_chars         numeric CHECK (price_per_1k_chars >= 0),
  price_per_minute           numeric CHECK (price_per_minute >= 0),
  price_per_minute_streaming numeric CHECK (price_per_minute_streaming >= 0),${VERSIONED},
  CONSTRAINT models_account_model_key UNIQUE (account_id, model_id)
);
CREATE INDEX models_model_id ON control.models (model_id);

CREATE TABLE control.teams (
  id          uuid PRIMARY KEY,
  name        text COLLATE "C" NOT NULL CONSTRAINT teams_name_key UNIQUE,
  description text NOT NULL DEFAULT '',${VERSIONED}
);

CREATE TABLE control.team_members (
  team_id    uuid        NOT NULL REFERENCES control.teams (id) ON DELETE CASCADE,
  member     text        COLLATE "C" NOT NULL,
  created_at timestamptz NOT NULL,
  CONSTRAINT team_members_pkey PRIMARY KEY (team_id, member)
);
CREATE INDEX team_members_member ON control.team_members (member);

CREATE TABLE control.service_accounts (
  id          uuid PRIMARY KEY,
  name        text COLLATE "C" NOT NULL CONSTRAINT service_accounts_name_key UNIQUE,
  description text NOT NULL DEFAULT '',${VERSIONED}
);

-- Only SHA-256 of a key is kept (service-key.ts); valid while not revoked, before expires_at and
-- before grace_until (set when it was rotated).
CREATE TABLE control.service_keys (
  id                 uuid        PRIMARY KEY,
  -- Creation order independent of clocks: listings page by it.
  seq                bigint      GENERATED ALWAYS AS IDENTITY CONSTRAINT service_keys_seq_key UNIQUE,
  service_account_id uuid        NOT NULL REFERENCES control.service_accounts (id) ON DELETE CASCADE,
  key_hash           text        NOT NULL CONSTRAINT service_keys_hash_key UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
  hint               text        NOT NULL,
  created_at         timestamptz NOT NULL,
  expires_at         timestamptz,
  grace_until        timestamptz,
  revoked_at         timestamptz,
  replaced_by        uuid REFERENCES control.service_keys (id) ON DELETE SET NULL
);
CREATE INDEX service_keys_account ON control.service_keys (service_account_id, seq);

CREATE TABLE control.audit_events (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  revision     bigint      NOT NULL REFERENCES control.revisions (revision),
  at           timestamptz NOT NULL,
  actor        text        NOT NULL,
  action       text        NOT NULL,
  resource     text        NOT NULL,
  resource_key text        COLLATE "C" NOT NULL,
  before       jsonb,
  after        jsonb
);
CREATE INDEX audit_events_resource ON control.audit_events (resource, resource_key, id);
`,
  },
  {
    version: 2,
    name: 'models: max_session_seconds',
    // The YAML bound of config/schema.ts (1 s to a week): a pod compiles the store's models through
    // that schema, so a value it would refuse must never be stored. Null: no bound of the model's own.
    sql: `
ALTER TABLE control.models ADD COLUMN max_session_seconds integer CHECK (max_session_seconds BETWEEN 1 AND 604800);
`,
  },
];

/** Arbitrary constant naming the control-plane migration lock ("vgct"); the usage lock is "vgus". */
export const CONTROL_LOCK_KEY = 0x7667_6374;

/**
 * Applies pending migrations in one transaction under `pg_advisory_xact_lock`, so control planes
 * starting together on one PostgreSQL apply each version once (the others wait, then find it
 * applied). On PGlite the lock is uncontended — its single connection already runs transactions
 * one at a time. Returns the versions applied now.
 */
export async function migrateControl(
  runner: QueryRunner,
  migrations: readonly ControlMigration[] = CONTROL_MIGRATIONS,
): Promise<number[]> {
  return runner.transaction(async (sql) => {
    await sql.query('SELECT pg_advisory_xact_lock($1)', [CONTROL_LOCK_KEY]);
    // Created under the lock: two concurrent CREATE SCHEMA IF NOT EXISTS can still collide.
    await sql.exec(`CREATE SCHEMA IF NOT EXISTS control;
CREATE TABLE IF NOT EXISTS control.schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const rows = await sql.query<{ version: number }>('SELECT version FROM control.schema_migrations');
    const done = new Set(rows.map((r) => Number(r.version)));
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await sql.exec(m.sql);
      await sql.query('INSERT INTO control.schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    return applied;
  });
}
