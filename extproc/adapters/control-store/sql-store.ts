/**
 * The one SQL implementation of {@link ControlStore}, for PostgreSQL (`pg`) and PGlite alike
 * through {@link QueryRunner}.
 *
 * Every mutation runs in one transaction that first locks the single `control.state` row. That
 * serialises writers, so (a) revisions are handed out in commit order without gaps, (b) the
 * existence and version checks below cannot race another writer, and (c) the revision bump and
 * the audit events commit or roll back with the change itself. The revision is bumped lazily by
 * the first audit event, so a call that changes nothing (an identical create) bumps nothing.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { describeSecret, type Keyring } from '../../core/control/envelope.ts';
import { decodeCursor, encodeCursor } from '../../core/control/cursor.ts';
import {
  DuplicateError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  VersionConflictError,
  type ResourceKind,
} from '../../core/control/errors.ts';
import {
  accountPatchInput,
  collaboratorPatchInput,
  memberInput,
  modelPatchInput,
  newAccountInput,
  newCollaboratorInput,
  newModelInput,
  newServiceAccountInput,
  newServiceKeyInput,
  newTeamInput,
  pageInput,
  parseInput,
  rotateServiceKeyInput,
  serviceAccountPatchInput,
  teamPatchInput,
  tokenInput,
} from '../../core/control/schemas.ts';
import { newServiceKey } from '../../core/control/service-key.ts';
import type {
  Account,
  AccountPatch,
  AuditEvent,
  AuditFilter,
  Collaborator,
  CollaboratorRole,
  ControlConfiguration,
  ControlStore,
  Created,
  IssuedServiceKey,
  Model,
  ModelFilter,
  ModelPatch,
  MutationContext,
  NewAccount,
  NewCollaborator,
  NewModel,
  NewServiceAccount,
  NewServiceKey,
  NewTeam,
  Page,
  PageRequest,
  Price,
  RotateServiceKey,
  ServiceAccount,
  ServiceAccountPatch,
  ServiceKey,
  ServiceKeyMatch,
  Subject,
  Team,
  TeamMember,
  TeamPatch,
} from '../../core/control/store.ts';
import type { QueryRunner, Sql } from './query-runner.ts';
import {
  ACCOUNT_SELECT,
  AUDIT_SELECT,
  COLLABORATOR_SELECT,
  MODEL_SELECT,
  SERVICE_ACCOUNT_SELECT,
  SERVICE_KEY_SELECT,
  TEAM_SELECT,
  int,
  keyNotAfter,
  keyValidAt,
  sealedOf,
  toAccount,
  toAudit,
  toCollaborator,
  toMember,
  toModel,
  toServiceAccount,
  toServiceKey,
  toTeam,
  type AccountRow,
  type AuditRow,
  type CollaboratorRow,
  type MemberRow,
  type ModelRow,
  type NamedRow,
  type ServiceKeyRow,
} from './rows.ts';

export interface SqlControlStoreOptions {
  /** Seals new tokens, opens stored ones for identical-create checks, rewraps on KEK rotation. */
  readonly keyring: Keyring;
  /** The clock of timestamps and key validity (tests move it). */
  readonly now?: () => Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ACTOR = /^[\x21-\x7e]{1,200}$/;

/** One mutation in progress: its transaction, time and (once audited) revision. */
class Change {
  revision: number | undefined;
  constructor(readonly sql: Sql, readonly actor: string, readonly at: string) {}

  async audit(action: string, resource: ResourceKind, key: string, before: object | null, after: object | null): Promise<void> {
    if (this.revision === undefined) {
      const [row] = await this.sql.query<{ revision: string }>(
        'UPDATE control.state SET revision = revision + 1 WHERE singleton RETURNING revision::text AS revision',
      );
      this.revision = int(row!.revision);
      await this.sql.query('INSERT INTO control.revisions (revision, committed_at, actor, summary) VALUES ($1, $2, $3, $4)', [
        this.revision, this.at, this.actor, action,
      ]);
    }
    await this.sql.query(
      `INSERT INTO control.audit_events (revision, at, actor, action, resource, resource_key, before, after)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)`,
      [this.revision, this.at, this.actor, action, resource, key, json(before), json(after)],
    );
  }
}

function json(v: object | null): string | null {
  return v === null ? null : JSON.stringify(v);
}

function checkVersion(resource: ResourceKind, key: string, actual: number, expected: number | undefined): void {
  if (expected !== undefined && expected !== actual) throw new VersionConflictError(resource, key, expected, actual);
}

function priceColumns(p: Price): [string | null, string | null, string | null] {
  return [p.perThousandChars ?? null, p.perMinute ?? null, p.perMinuteStreaming ?? null];
}

function samePrice(a: Price, b: Price): boolean {
  return a.perThousandChars === b.perThousandChars && a.perMinute === b.perMinute && a.perMinuteStreaming === b.perMinuteStreaming;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export class SqlControlStore implements ControlStore {
  readonly #runner: QueryRunner;
  readonly #keyring: Keyring;
  readonly #now: () => Date;
  /** Set on the store `atomically` hands out: every call joins this one change. */
  readonly #bound: Change | undefined;

  constructor(runner: QueryRunner, options: SqlControlStoreOptions, bound?: Change) {
    this.#runner = runner;
    this.#keyring = options.keyring;
    this.#now = options.now ?? (() => new Date());
    this.#bound = bound;
  }

  /**
   * Runs `fn` against a store bound to one transaction (PUT /apply): every change it makes commits
   * together, as one revision under `ctx.actor`, or not at all when `fn` throws.
   */
  atomically<T>(ctx: MutationContext, fn: (tx: ControlStore) => Promise<T>): Promise<T> {
    if (this.#bound) return fn(this);
    return this.#mutate(ctx, (c) => {
      const joined: QueryRunner = { transaction: (inner) => inner(c.sql), close: async () => {} };
      return fn(new SqlControlStore(joined, { keyring: this.#keyring, now: this.#now }, c));
    });
  }

  // ── plumbing ────────────────────────────────────────────────────────────────────────────

  async #mutate<T>(ctx: MutationContext, fn: (c: Change) => Promise<T>): Promise<T> {
    if (!ACTOR.test(ctx.actor)) throw new InvalidInputError('actor', 'must be 1–200 printable characters without spaces');
    if (this.#bound) return fn(this.#bound);
    return this.#runner.transaction(async (sql) => {
      await sql.query('SELECT revision FROM control.state WHERE singleton FOR UPDATE');
      return fn(new Change(sql, ctx.actor, this.#now().toISOString()));
    });
  }

  #read<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return this.#runner.transaction(fn);
  }

  /** Keyset pagination: `query` gets the decoded key of the last row seen (or null) and a limit. */
  async #page<R extends object, T>(
    sql: Sql,
    list: string,
    arity: number,
    page: PageRequest | undefined,
    query: (after: (string | number)[] | null, limit: number) => { text: string; params: unknown[] },
    map: (row: R) => T,
    key: (item: T) => (string | number)[],
  ): Promise<Page<T>> {
    const p = parseInput(pageInput, page ?? {}, 'page');
    const after = p.cursor ? decodeCursor(list, p.cursor, arity) : null;
    const q = query(after, p.limit + 1);
    const rows = (await sql.query<R>(q.text, q.params)).map(map);
    const items = rows.slice(0, p.limit);
    return { items, nextCursor: rows.length > p.limit ? encodeCursor(list, key(items[items.length - 1]!)) : null };
  }

  async #accountRow(sql: Sql, name: string): Promise<AccountRow | undefined> {
    return (await sql.query<AccountRow>(`${ACCOUNT_SELECT} WHERE a.name = $1`, [name]))[0];
  }

  async #mustAccount(sql: Sql, name: string): Promise<AccountRow> {
    const row = await this.#accountRow(sql, name);
    if (!row) throw new NotFoundError('account', name);
    return row;
  }

  async #writeSecret(sql: Sql, accountId: string, version: number, token: string, at: string): Promise<void> {
    const sealed = this.#keyring.seal(token, { accountId, version });
    const shown = describeSecret(token);
    await sql.query(
      `INSERT INTO control.account_secrets
         (account_id, secret_version, algorithm, kek_id, wrapped_key, ciphertext, last4, fingerprint, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (account_id) DO UPDATE SET secret_version = EXCLUDED.secret_version, algorithm = EXCLUDED.algorithm,
         kek_id = EXCLUDED.kek_id, wrapped_key = EXCLUDED.wrapped_key, ciphertext = EXCLUDED.ciphertext,
         last4 = EXCLUDED.last4, fingerprint = EXCLUDED.fingerprint, updated_at = EXCLUDED.updated_at`,
      [accountId, version, sealed.algorithm, sealed.kekId, Buffer.from(sealed.wrappedKey), Buffer.from(sealed.ciphertext), shown.last4, shown.fingerprint, at],
    );
  }

  /** Whether the stored token equals `token`, compared in constant time after opening it. */
  #tokenEquals(row: AccountRow, token: string | undefined): boolean {
    const sealed = sealedOf(row);
    if (sealed === null || token === undefined) return sealed === null && token === undefined;
    const stored = Buffer.from(this.#keyring.open(sealed, { accountId: row.id, version: sealed.version }), 'utf8');
    const given = Buffer.from(token, 'utf8');
    return stored.length === given.length && timingSafeEqual(stored, given);
  }

  // ── accounts ────────────────────────────────────────────────────────────────────────────

  async createAccount(input: NewAccount, ctx: MutationContext): Promise<Created<Account>> {
    const v = parseInput(newAccountInput, input);
    return this.#mutate(ctx, async (c) => {
      const existing = await this.#accountRow(c.sql, v.name);
      if (existing) {
        const a = toAccount(existing);
        const same = a.provider === v.provider && a.baseUrl === v.baseUrl && a.concurrencyUnits === v.concurrencyUnits &&
          a.wsPerUnit === v.wsPerUnit && this.#tokenEquals(existing, v.token);
        if (same) return { value: a, created: false };
        throw new DuplicateError('account', 'name', v.name);
      }
      const id = randomUUID();
      await c.sql.query(
        `INSERT INTO control.accounts (id, name, provider, base_url, concurrency_units, ws_per_unit, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`,
        [id, v.name, v.provider, v.baseUrl, v.concurrencyUnits, v.wsPerUnit, c.at],
      );
      if (v.token !== undefined) await this.#writeSecret(c.sql, id, 1, v.token, c.at);
      const after = toAccount((await this.#accountRow(c.sql, v.name))!);
      await c.audit('account.create', 'account', v.name, null, after);
      return { value: after, created: true };
    });
  }

  async getAccount(name: string): Promise<Account | undefined> {
    const row = await this.#read((sql) => this.#accountRow(sql, name));
    return row && toAccount(row);
  }

  listAccounts(page?: PageRequest): Promise<Page<Account>> {
    return this.#read((sql) =>
      this.#page<AccountRow, Account>(sql, 'accounts', 1, page, (after, limit) => ({
        text: `${ACCOUNT_SELECT} ${after ? 'WHERE a.name > $2' : ''} ORDER BY a.name LIMIT $1`,
        params: after ? [limit, after[0]] : [limit],
      }), toAccount, (a) => [a.name]),
    );
  }

  async updateAccount(name: string, patch: AccountPatch, expectedVersion: number, ctx: MutationContext): Promise<Account> {
    const v = parseInput(accountPatchInput, patch);
    return this.#mutate(ctx, async (c) => {
      const before = toAccount(await this.#mustAccount(c.sql, name));
      checkVersion('account', name, before.version, expectedVersion);
      await c.sql.query(
        `UPDATE control.accounts SET provider = $2, base_url = $3, concurrency_units = $4, ws_per_unit = $5,
           row_version = row_version + 1, updated_at = $6 WHERE id = $1`,
        [before.id, v.provider ?? before.provider, v.baseUrl === undefined ? before.baseUrl : v.baseUrl,
          v.concurrencyUnits ?? before.concurrencyUnits, v.wsPerUnit ?? before.wsPerUnit, c.at],
      );
      const after = toAccount((await this.#accountRow(c.sql, name))!);
      await c.audit('account.update', 'account', name, before, after);
      return after;
    });
  }

  async deleteAccount(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const before = toAccount(await this.#mustAccount(c.sql, name));
      checkVersion('account', name, before.version, expectedVersion);
      // The audit row keeps what the cascade removes, so the account can be recreated from it.
      const collaborators = (await c.sql.query<CollaboratorRow>(`${COLLABORATOR_SELECT} WHERE c.account_id = $1 ORDER BY c.subject`, [before.id]))
        .map((r) => ({ subject: r.subject, role: r.role }));
      const models = (await c.sql.query<ModelRow>(`${MODEL_SELECT} WHERE m.account_id = $1 ORDER BY m.model_id`, [before.id])).map(toModel);
      await c.sql.query('DELETE FROM control.accounts WHERE id = $1', [before.id]);
      await c.audit('account.delete', 'account', name, { ...before, collaborators, models }, null);
    });
  }

  async setAccountSecret(name: string, token: string, ctx: MutationContext, expectedVersion?: number): Promise<Account> {
    const t = parseInput(tokenInput, token, 'token');
    return this.#mutate(ctx, async (c) => {
      const row = await this.#mustAccount(c.sql, name);
      const before = toAccount(row);
      checkVersion('account', name, before.version, expectedVersion);
      await this.#writeSecret(c.sql, row.id, (row.secret_version ?? 0) + 1, t, c.at);
      await c.sql.query('UPDATE control.accounts SET row_version = row_version + 1, updated_at = $2 WHERE id = $1', [row.id, c.at]);
      const after = toAccount((await this.#accountRow(c.sql, name))!);
      await c.audit(before.secret.set ? 'account_secret.rotate' : 'account_secret.set', 'account_secret', name, before.secret, after.secret);
      return after;
    });
  }

  async rewrapSecrets(ctx: MutationContext): Promise<number> {
    return this.#mutate(ctx, async (c) => {
      const rows = await c.sql.query<AccountRow>(`${ACCOUNT_SELECT} WHERE s.kek_id IS NOT NULL AND s.kek_id <> $1 ORDER BY a.name`, [
        this.#keyring.currentKekId,
      ]);
      for (const row of rows) {
        const sealed = sealedOf(row)!;
        const next = this.#keyring.rewrap(sealed, { accountId: row.id, version: sealed.version });
        await c.sql.query('UPDATE control.account_secrets SET kek_id = $2, wrapped_key = $3 WHERE account_id = $1', [
          row.id, next.kekId, Buffer.from(next.wrappedKey),
        ]);
        await c.audit('account_secret.rewrap', 'account_secret', row.name, { kekId: sealed.kekId }, { kekId: next.kekId });
      }
      return rows.length;
    });
  }

  // ── collaborators ───────────────────────────────────────────────────────────────────────

  async #collaborator(sql: Sql, accountId: string, subject: string): Promise<Collaborator | undefined> {
    const row = (await sql.query<CollaboratorRow>(`${COLLABORATOR_SELECT} WHERE c.account_id = $1 AND c.subject = $2`, [accountId, subject]))[0];
    return row && toCollaborator(row);
  }

  async addCollaborator(account: string, input: NewCollaborator, ctx: MutationContext): Promise<Created<Collaborator>> {
    const v = parseInput(newCollaboratorInput, input);
    return this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const existing = await this.#collaborator(c.sql, acc.id, v.subject);
      if (existing) {
        if (existing.role === v.role) return { value: existing, created: false };
        throw new DuplicateError('collaborator', 'subject', v.subject);
      }
      await c.sql.query(
        'INSERT INTO control.collaborators (account_id, subject, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)',
        [acc.id, v.subject, v.role, c.at],
      );
      const after = (await this.#collaborator(c.sql, acc.id, v.subject))!;
      await c.audit('collaborator.create', 'collaborator', `${account}/${v.subject}`, null, after);
      return { value: after, created: true };
    });
  }

  getCollaborator(account: string, subject: string): Promise<Collaborator | undefined> {
    return this.#read(async (sql) => {
      const acc = await this.#accountRow(sql, account);
      return acc && this.#collaborator(sql, acc.id, subject);
    });
  }

  listCollaborators(account: string, page?: PageRequest): Promise<Page<Collaborator>> {
    return this.#read(async (sql) => {
      const acc = await this.#mustAccount(sql, account);
      return this.#page<CollaboratorRow, Collaborator>(sql, `collaborators/${acc.id}`, 1, page, (after, limit) => ({
        text: `${COLLABORATOR_SELECT} WHERE c.account_id = $2 ${after ? 'AND c.subject > $3' : ''} ORDER BY c.subject LIMIT $1`,
        params: after ? [limit, acc.id, after[0]] : [limit, acc.id],
      }), toCollaborator, (x) => [x.subject]);
    });
  }

  async updateCollaborator(account: string, subject: string, patch: { readonly role: CollaboratorRole }, expectedVersion: number, ctx: MutationContext): Promise<Collaborator> {
    const v = parseInput(collaboratorPatchInput, patch);
    return this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const key = `${account}/${subject}`;
      const before = await this.#collaborator(c.sql, acc.id, subject);
      if (!before) throw new NotFoundError('collaborator', key);
      checkVersion('collaborator', key, before.version, expectedVersion);
      await c.sql.query(
        'UPDATE control.collaborators SET role = $3, row_version = row_version + 1, updated_at = $4 WHERE account_id = $1 AND subject = $2',
        [acc.id, subject, v.role, c.at],
      );
      const after = (await this.#collaborator(c.sql, acc.id, subject))!;
      await c.audit('collaborator.update', 'collaborator', key, before, after);
      return after;
    });
  }

  async removeCollaborator(account: string, subject: string, ctx: MutationContext, expectedVersion?: number): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const key = `${account}/${subject}`;
      const before = await this.#collaborator(c.sql, acc.id, subject);
      if (!before) throw new NotFoundError('collaborator', key);
      checkVersion('collaborator', key, before.version, expectedVersion);
      await c.sql.query('DELETE FROM control.collaborators WHERE account_id = $1 AND subject = $2', [acc.id, subject]);
      await c.audit('collaborator.delete', 'collaborator', key, before, null);
    });
  }

  // ── models ──────────────────────────────────────────────────────────────────────────────

  async #model(sql: Sql, accountId: string, modelId: string): Promise<Model | undefined> {
    const row = (await sql.query<ModelRow>(`${MODEL_SELECT} WHERE m.account_id = $1 AND m.model_id = $2`, [accountId, modelId]))[0];
    return row && toModel(row);
  }

  /** Within one account a name (id or alias) must resolve to one model: the snapshot keys models by name. */
  async #checkNames(sql: Sql, accountId: string, modelId: string, aliases: readonly string[]): Promise<void> {
    const names = [modelId, ...aliases];
    const clash = (await sql.query<{ model_id: string; aliases: string[] }>(
      `SELECT model_id, aliases FROM control.models
        WHERE account_id = $1 AND model_id <> $2 AND (model_id = ANY($3::text[]) OR aliases && $3::text[])`,
      [accountId, modelId, names],
    ))[0];
    if (!clash) return;
    const taken = new Set([clash.model_id, ...clash.aliases]);
    if (taken.has(modelId)) throw new DuplicateError('model', 'modelId', modelId);
    throw new DuplicateError('model', 'aliases', aliases.find((a) => taken.has(a))!);
  }

  async createModel(account: string, input: NewModel, ctx: MutationContext): Promise<Created<Model>> {
    const v = parseInput(newModelInput, input);
    return this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const existing = await this.#model(c.sql, acc.id, v.modelId);
      if (existing) {
        if (
          existing.type === v.type &&
          sameList(existing.aliases, v.aliases) &&
          samePrice(existing.price, v.price) &&
          existing.maxSessionSeconds === v.maxSessionSeconds
        ) {
          return { value: existing, created: false };
        }
        throw new DuplicateError('model', 'modelId', v.modelId);
      }
      await this.#checkNames(c.sql, acc.id, v.modelId, v.aliases);
      await c.sql.query(
        `INSERT INTO control.models (id, account_id, model_id, type, aliases, price_per_1k_chars, price_per_minute,
           price_per_minute_streaming, created_at, updated_at, max_session_seconds) VALUES ($1, $2, $3, $4, $5::text[], $6, $7, $8, $9, $9, $10)`,
        [randomUUID(), acc.id, v.modelId, v.type, v.aliases, ...priceColumns(v.price), c.at, v.maxSessionSeconds],
      );
      const after = (await this.#model(c.sql, acc.id, v.modelId))!;
      await c.audit('model.create', 'model', `${account}/${v.modelId}`, null, after);
      return { value: after, created: true };
    });
  }

  getModel(account: string, modelId: string): Promise<Model | undefined> {
    return this.#read(async (sql) => {
      const acc = await this.#accountRow(sql, account);
      return acc && this.#model(sql, acc.id, modelId);
    });
  }

  listModels(filter: ModelFilter = {}, page?: PageRequest): Promise<Page<Model>> {
    return this.#read(async (sql) => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.account !== undefined) {
        const acc = await this.#mustAccount(sql, filter.account);
        params.push(acc.id);
        where.push(`m.account_id = $${params.length + 1}`);
      }
      if (filter.modelId !== undefined) {
        params.push(filter.modelId);
        where.push(`m.model_id = $${params.length + 1}`);
      }
      return this.#page<ModelRow, Model>(sql, `models/${filter.account ?? ''}/${filter.modelId ?? ''}`, 2, page, (after, limit) => {
        const w = [...where];
        const p: unknown[] = [limit, ...params];
        if (after) {
          p.push(after[0], after[1]);
          w.push(`(m.model_id, a.name) > ($${p.length - 1}, $${p.length})`);
        }
        return { text: `${MODEL_SELECT} ${w.length ? `WHERE ${w.join(' AND ')}` : ''} ORDER BY m.model_id, a.name LIMIT $1`, params: p };
      }, toModel, (m) => [m.modelId, m.account]);
    });
  }

  async updateModel(account: string, modelId: string, patch: ModelPatch, expectedVersion: number, ctx: MutationContext): Promise<Model> {
    const v = parseInput(modelPatchInput, patch);
    return this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const key = `${account}/${modelId}`;
      const before = await this.#model(c.sql, acc.id, modelId);
      if (!before) throw new NotFoundError('model', key);
      checkVersion('model', key, before.version, expectedVersion);
      const aliases = v.aliases ?? before.aliases;
      if (aliases.includes(modelId)) throw new InvalidInputError('aliases', 'a model is not its own alias');
      await this.#checkNames(c.sql, acc.id, modelId, aliases);
      await c.sql.query(
        `UPDATE control.models SET type = $3, aliases = $4::text[], price_per_1k_chars = $5, price_per_minute = $6,
           price_per_minute_streaming = $7, max_session_seconds = $9, row_version = row_version + 1, updated_at = $8
         WHERE account_id = $1 AND model_id = $2`,
        [acc.id, modelId, v.type ?? before.type, [...aliases], ...priceColumns(v.price ?? before.price), c.at, v.maxSessionSeconds === undefined ? before.maxSessionSeconds : v.maxSessionSeconds],
      );
      const after = (await this.#model(c.sql, acc.id, modelId))!;
      await c.audit('model.update', 'model', key, before, after);
      return after;
    });
  }

  async deleteModel(account: string, modelId: string, ctx: MutationContext, expectedVersion?: number): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const acc = await this.#mustAccount(c.sql, account);
      const key = `${account}/${modelId}`;
      const before = await this.#model(c.sql, acc.id, modelId);
      if (!before) throw new NotFoundError('model', key);
      checkVersion('model', key, before.version, expectedVersion);
      await c.sql.query('DELETE FROM control.models WHERE id = $1', [before.id]);
      await c.audit('model.delete', 'model', key, before, null);
    });
  }

  // ── teams and members ───────────────────────────────────────────────────────────────────

  async #team(sql: Sql, name: string): Promise<Team | undefined> {
    const row = (await sql.query<NamedRow>(`${TEAM_SELECT} WHERE t.name = $1`, [name]))[0];
    return row && toTeam(row);
  }

  async #mustTeam(sql: Sql, name: string): Promise<Team> {
    const t = await this.#team(sql, name);
    if (!t) throw new NotFoundError('team', name);
    return t;
  }

  async createTeam(input: NewTeam, ctx: MutationContext): Promise<Created<Team>> {
    const v = parseInput(newTeamInput, input);
    return this.#mutate(ctx, async (c) => {
      const existing = await this.#team(c.sql, v.name);
      if (existing) {
        if (existing.description === v.description) return { value: existing, created: false };
        throw new DuplicateError('team', 'name', v.name);
      }
      await c.sql.query('INSERT INTO control.teams (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)', [
        randomUUID(), v.name, v.description, c.at,
      ]);
      const after = (await this.#team(c.sql, v.name))!;
      await c.audit('team.create', 'team', v.name, null, after);
      return { value: after, created: true };
    });
  }

  getTeam(name: string): Promise<Team | undefined> {
    return this.#read((sql) => this.#team(sql, name));
  }

  listTeams(page?: PageRequest): Promise<Page<Team>> {
    return this.#read((sql) =>
      this.#page<NamedRow, Team>(sql, 'teams', 1, page, (after, limit) => ({
        text: `${TEAM_SELECT} ${after ? 'WHERE t.name > $2' : ''} ORDER BY t.name LIMIT $1`,
        params: after ? [limit, after[0]] : [limit],
      }), toTeam, (t) => [t.name]),
    );
  }

  async updateTeam(name: string, patch: TeamPatch, expectedVersion: number, ctx: MutationContext): Promise<Team> {
    const v = parseInput(teamPatchInput, patch);
    return this.#mutate(ctx, async (c) => {
      const before = await this.#mustTeam(c.sql, name);
      checkVersion('team', name, before.version, expectedVersion);
      await c.sql.query('UPDATE control.teams SET description = $2, row_version = row_version + 1, updated_at = $3 WHERE id = $1', [
        before.id, v.description ?? before.description, c.at,
      ]);
      const after = (await this.#team(c.sql, name))!;
      await c.audit('team.update', 'team', name, before, after);
      return after;
    });
  }

  async deleteTeam(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const before = await this.#mustTeam(c.sql, name);
      checkVersion('team', name, before.version, expectedVersion);
      const members = (await c.sql.query<{ member: string }>('SELECT member FROM control.team_members WHERE team_id = $1 ORDER BY member', [before.id]))
        .map((r) => r.member);
      await c.sql.query('DELETE FROM control.teams WHERE id = $1', [before.id]);
      await c.audit('team.delete', 'team', name, { ...before, members }, null);
    });
  }

  async #member(sql: Sql, team: Team, member: string): Promise<TeamMember | undefined> {
    const row = (await sql.query<MemberRow>(
      'SELECT $3::text AS team, member, created_at FROM control.team_members WHERE team_id = $1 AND member = $2',
      [team.id, member, team.name],
    ))[0];
    return row && toMember(row);
  }

  async addTeamMember(team: string, member: string, ctx: MutationContext): Promise<Created<TeamMember>> {
    const m = parseInput(memberInput, member, 'member');
    return this.#mutate(ctx, async (c) => {
      const t = await this.#mustTeam(c.sql, team);
      const existing = await this.#member(c.sql, t, m);
      if (existing) return { value: existing, created: false };
      await c.sql.query('INSERT INTO control.team_members (team_id, member, created_at) VALUES ($1, $2, $3)', [t.id, m, c.at]);
      const after = (await this.#member(c.sql, t, m))!;
      await c.audit('team_member.create', 'team_member', `${team}/${m}`, null, after);
      return { value: after, created: true };
    });
  }

  listTeamMembers(team: string, page?: PageRequest): Promise<Page<TeamMember>> {
    return this.#read(async (sql) => {
      const t = await this.#mustTeam(sql, team);
      return this.#page<MemberRow, TeamMember>(sql, `members/${t.id}`, 1, page, (after, limit) => ({
        text: `SELECT $3::text AS team, member, created_at FROM control.team_members WHERE team_id = $2
                 ${after ? 'AND member > $4' : ''} ORDER BY member LIMIT $1`,
        params: after ? [limit, t.id, t.name, after[0]] : [limit, t.id, t.name],
      }), toMember, (x) => [x.member]);
    });
  }

  async removeTeamMember(team: string, member: string, ctx: MutationContext): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const t = await this.#mustTeam(c.sql, team);
      const before = await this.#member(c.sql, t, member);
      if (!before) throw new NotFoundError('team_member', `${team}/${member}`);
      await c.sql.query('DELETE FROM control.team_members WHERE team_id = $1 AND member = $2', [t.id, member]);
      await c.audit('team_member.delete', 'team_member', `${team}/${member}`, before, null);
    });
  }

  // ── service accounts and keys ───────────────────────────────────────────────────────────

  async #serviceAccount(sql: Sql, name: string): Promise<ServiceAccount | undefined> {
    const row = (await sql.query<NamedRow>(`${SERVICE_ACCOUNT_SELECT} WHERE t.name = $1`, [name]))[0];
    return row && toServiceAccount(row);
  }

  async #mustServiceAccount(sql: Sql, name: string): Promise<ServiceAccount> {
    const s = await this.#serviceAccount(sql, name);
    if (!s) throw new NotFoundError('service_account', name);
    return s;
  }

  async createServiceAccount(input: NewServiceAccount, ctx: MutationContext): Promise<Created<ServiceAccount>> {
    const v = parseInput(newServiceAccountInput, input);
    return this.#mutate(ctx, async (c) => {
      const existing = await this.#serviceAccount(c.sql, v.name);
      if (existing) {
        if (existing.description === v.description) return { value: existing, created: false };
        throw new DuplicateError('service_account', 'name', v.name);
      }
      await c.sql.query('INSERT INTO control.service_accounts (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)', [
        randomUUID(), v.name, v.description, c.at,
      ]);
      const after = (await this.#serviceAccount(c.sql, v.name))!;
      await c.audit('service_account.create', 'service_account', v.name, null, after);
      return { value: after, created: true };
    });
  }

  getServiceAccount(name: string): Promise<ServiceAccount | undefined> {
    return this.#read((sql) => this.#serviceAccount(sql, name));
  }

  listServiceAccounts(page?: PageRequest): Promise<Page<ServiceAccount>> {
    return this.#read((sql) =>
      this.#page<NamedRow, ServiceAccount>(sql, 'service_accounts', 1, page, (after, limit) => ({
        text: `${SERVICE_ACCOUNT_SELECT} ${after ? 'WHERE t.name > $2' : ''} ORDER BY t.name LIMIT $1`,
        params: after ? [limit, after[0]] : [limit],
      }), toServiceAccount, (s) => [s.name]),
    );
  }

  async updateServiceAccount(name: string, patch: ServiceAccountPatch, expectedVersion: number, ctx: MutationContext): Promise<ServiceAccount> {
    const v = parseInput(serviceAccountPatchInput, patch);
    return this.#mutate(ctx, async (c) => {
      const before = await this.#mustServiceAccount(c.sql, name);
      checkVersion('service_account', name, before.version, expectedVersion);
      await c.sql.query('UPDATE control.service_accounts SET description = $2, row_version = row_version + 1, updated_at = $3 WHERE id = $1', [
        before.id, v.description ?? before.description, c.at,
      ]);
      const after = (await this.#serviceAccount(c.sql, name))!;
      await c.audit('service_account.update', 'service_account', name, before, after);
      return after;
    });
  }

  async deleteServiceAccount(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void> {
    await this.#mutate(ctx, async (c) => {
      const before = await this.#mustServiceAccount(c.sql, name);
      checkVersion('service_account', name, before.version, expectedVersion);
      const keys = (await c.sql.query<ServiceKeyRow>(`${SERVICE_KEY_SELECT} WHERE k.service_account_id = $1 ORDER BY k.seq`, [before.id]))
        .map(toServiceKey);
      // `service:<name>` exists only through this row (unlike `team:` names, which tokens also
      // carry), so its grants go with it: a later service account of the same name starts with none.
      const collaborators = (await c.sql.query<CollaboratorRow>(`${COLLABORATOR_SELECT} WHERE c.subject = $1 ORDER BY a.name`, [before.subject]))
        .map((r) => ({ account: r.account, role: r.role }));
      const teams = (await c.sql.query<{ team: string }>(
        'SELECT t.name AS team FROM control.team_members m JOIN control.teams t ON t.id = m.team_id WHERE m.member = $1 ORDER BY t.name',
        [before.subject],
      )).map((r) => r.team);
      await c.sql.query('DELETE FROM control.collaborators WHERE subject = $1', [before.subject]);
      await c.sql.query('DELETE FROM control.team_members WHERE member = $1', [before.subject]);
      await c.sql.query('DELETE FROM control.service_accounts WHERE id = $1', [before.id]);
      await c.audit('service_account.delete', 'service_account', name, { ...before, keys, collaborators, teams }, null);
    });
  }

  async #serviceKey(sql: Sql, serviceAccountId: string, keyId: string): Promise<ServiceKey | undefined> {
    if (!UUID.test(keyId)) return undefined;
    const row = (await sql.query<ServiceKeyRow>(`${SERVICE_KEY_SELECT} WHERE k.service_account_id = $1 AND k.id = $2::uuid`, [serviceAccountId, keyId]))[0];
    return row && toServiceKey(row);
  }

  #future(field: string, at: string | null): string | null {
    if (at !== null && Date.parse(at) <= this.#now().getTime()) throw new InvalidInputError(field, 'must be in the future');
    return at === null ? null : new Date(at).toISOString();
  }

  async #mint(c: Change, sa: ServiceAccount, expiresAt: string | null): Promise<IssuedServiceKey> {
    const minted = newServiceKey();
    const id = randomUUID();
    await c.sql.query(
      `INSERT INTO control.service_keys (id, service_account_id, key_hash, hint, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [id, sa.id, minted.hash, minted.hint, c.at, expiresAt],
    );
    const key = (await this.#serviceKey(c.sql, sa.id, id))!;
    await c.audit('service_key.create', 'service_key', `${sa.name}/${id}`, null, key);
    return { key, plaintext: minted.plaintext };
  }

  async createServiceKey(serviceAccount: string, input: NewServiceKey, ctx: MutationContext): Promise<IssuedServiceKey> {
    const v = parseInput(newServiceKeyInput, input);
    const expiresAt = this.#future('expiresAt', v.expiresAt);
    return this.#mutate(ctx, async (c) => this.#mint(c, await this.#mustServiceAccount(c.sql, serviceAccount), expiresAt));
  }

  async rotateServiceKey(serviceAccount: string, keyId: string, input: RotateServiceKey, ctx: MutationContext): Promise<IssuedServiceKey> {
    const v = parseInput(rotateServiceKeyInput, input);
    return this.#mutate(ctx, async (c) => {
      const sa = await this.#mustServiceAccount(c.sql, serviceAccount);
      const key = `${serviceAccount}/${keyId}`;
      const old = await this.#serviceKey(c.sql, sa.id, keyId);
      if (!old) throw new NotFoundError('service_key', key);
      if (old.revokedAt !== null) throw new InvalidStateError('service_key', key, 'is revoked');
      if (old.replacedBy !== null) throw new InvalidStateError('service_key', key, 'was already rotated');
      if (!keyValidAt(old, new Date(c.at))) throw new InvalidStateError('service_key', key, 'has expired');
      const issued = await this.#mint(c, sa, this.#future('expiresAt', v.expiresAt === undefined ? old.expiresAt : v.expiresAt));
      const graceUntil = new Date(Date.parse(c.at) + v.graceSeconds * 1000).toISOString();
      await c.sql.query('UPDATE control.service_keys SET grace_until = $2, replaced_by = $3::uuid WHERE id = $1::uuid', [
        old.id, graceUntil, issued.key.id,
      ]);
      await c.audit('service_key.rotate', 'service_key', key, old, (await this.#serviceKey(c.sql, sa.id, keyId))!);
      return issued;
    });
  }

  async revokeServiceKey(serviceAccount: string, keyId: string, ctx: MutationContext): Promise<ServiceKey> {
    return this.#mutate(ctx, async (c) => {
      const sa = await this.#mustServiceAccount(c.sql, serviceAccount);
      const key = `${serviceAccount}/${keyId}`;
      const before = await this.#serviceKey(c.sql, sa.id, keyId);
      if (!before) throw new NotFoundError('service_key', key);
      if (before.revokedAt !== null) return before; // already revoked: nothing changes
      await c.sql.query('UPDATE control.service_keys SET revoked_at = $2 WHERE id = $1::uuid', [before.id, c.at]);
      const after = (await this.#serviceKey(c.sql, sa.id, keyId))!;
      await c.audit('service_key.revoke', 'service_key', key, before, after);
      return after;
    });
  }

  listServiceKeys(serviceAccount: string, page?: PageRequest): Promise<Page<ServiceKey>> {
    return this.#read(async (sql) => {
      const sa = await this.#mustServiceAccount(sql, serviceAccount);
      const seqOf = new Map<string, string>();
      return this.#page<ServiceKeyRow, ServiceKey>(sql, `service_keys/${sa.id}`, 1, page, (after, limit) => ({
        text: `${SERVICE_KEY_SELECT} WHERE k.service_account_id = $2 ${after ? 'AND k.seq > $3::bigint' : ''} ORDER BY k.seq LIMIT $1`,
        params: after ? [limit, sa.id, after[0]] : [limit, sa.id],
      }), (r) => {
        const k = toServiceKey(r);
        seqOf.set(k.id, r.seq);
        return k;
      }, (k) => [seqOf.get(k.id)!]);
    });
  }

  findServiceKeyByHash(hash: string): Promise<ServiceKeyMatch | undefined> {
    if (!/^[0-9a-f]{64}$/.test(hash)) return Promise.resolve(undefined);
    return this.#read(async (sql) => {
      const row = (await sql.query<ServiceKeyRow>(`${SERVICE_KEY_SELECT} WHERE k.key_hash = $1`, [hash]))[0];
      if (!row) return undefined;
      const key = toServiceKey(row);
      const serviceAccount = (await this.#serviceAccount(sql, row.service_account))!;
      return { serviceAccount, key, valid: keyValidAt(key, this.#now()) };
    });
  }

  // ── audit, revision, snapshot input ─────────────────────────────────────────────────────

  listAuditEvents(filter: AuditFilter = {}, page?: PageRequest): Promise<Page<AuditEvent>> {
    return this.#read((sql) =>
      this.#page<AuditRow, AuditEvent>(sql, `audit/${filter.resource ?? ''}/${filter.resourceKey ?? ''}`, 1, page, (after, limit) => {
        const w: string[] = [];
        const p: unknown[] = [limit];
        if (filter.resource !== undefined) w.push(`e.resource = $${p.push(filter.resource)}`);
        if (filter.resourceKey !== undefined) w.push(`e.resource_key = $${p.push(filter.resourceKey)}`);
        if (after) w.push(`e.id < $${p.push(after[0])}::bigint`);
        return { text: `${AUDIT_SELECT} ${w.length ? `WHERE ${w.join(' AND ')}` : ''} ORDER BY e.id DESC LIMIT $1`, params: p };
      }, toAudit, (e) => [e.id]),
    );
  }

  currentRevision(): Promise<number> {
    return this.#read(async (sql) => int((await sql.query<{ revision: string }>('SELECT revision::text AS revision FROM control.state'))[0]!.revision));
  }

  loadConfiguration(): Promise<ControlConfiguration> {
    return this.#read(async (sql) => {
      // One snapshot of every table: a change committing meanwhile is either wholly in or out.
      // Inside a change (the admin API's compile check) the transaction has begun and holds the
      // writers' lock, so it already sees one consistent state, its own writes included.
      if (!this.#bound) await sql.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const revision = int((await sql.query<{ revision: string }>('SELECT revision::text AS revision FROM control.state'))[0]!.revision);
      const accountRows = await sql.query<AccountRow>(`${ACCOUNT_SELECT} ORDER BY a.name`);
      const collaborators = (await sql.query<CollaboratorRow>(`${COLLABORATOR_SELECT} ORDER BY a.name, c.subject`)).map(toCollaborator);
      const models = (await sql.query<ModelRow>(`${MODEL_SELECT} ORDER BY m.model_id, a.name`)).map(toModel);
      const teams = (await sql.query<NamedRow>(`${TEAM_SELECT} ORDER BY t.name`)).map(toTeam);
      const members = await sql.query<{ team: string; member: string }>(
        'SELECT t.name AS team, m.member FROM control.team_members m JOIN control.teams t ON t.id = m.team_id ORDER BY t.name, m.member',
      );
      const serviceAccounts = (await sql.query<NamedRow>(`${SERVICE_ACCOUNT_SELECT} ORDER BY t.name`)).map(toServiceAccount);
      const now = this.#now();
      const keys = (await sql.query<ServiceKeyRow>(`${SERVICE_KEY_SELECT} WHERE k.revoked_at IS NULL ORDER BY k.seq`))
        .map((r) => ({ key: toServiceKey(r), hash: r.key_hash }))
        .filter((k) => keyValidAt(k.key, now));
      return {
        revision,
        accounts: accountRows.map((r) => {
          const sealed = sealedOf(r);
          return {
            ...toAccount(r),
            sealedSecret: sealed && { ...sealed, accountId: r.id },
            collaborators: collaborators.filter((c) => c.account === r.name).map((c) => ({ subject: c.subject as Subject, role: c.role })),
          };
        }),
        models,
        teams: teams.map((t) => ({ ...t, members: members.filter((m) => m.team === t.name).map((m) => m.member) })),
        serviceAccounts: serviceAccounts.map((s) => ({
          ...s,
          keys: keys.filter((k) => k.key.serviceAccount === s.name).map((k) => ({ id: k.key.id, hash: k.hash, notAfter: keyNotAfter(k.key) })),
        })),
      };
    });
  }
}
