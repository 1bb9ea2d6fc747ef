/**
 * The contract of ControlStore (extproc/core/control/store.ts), run against every
 * implementation: store-pg.test.ts (a fresh PostgreSQL database) and store-pglite.test.ts
 * (in-memory PGlite). Each case uses its own names, so cases share one migrated database and
 * assert on what they changed (revision and audit deltas), not on global counts.
 */
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import {
  DuplicateError,
  InvalidCursorError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  SecretDecryptError,
  VersionConflictError,
} from '../../extproc/core/control/errors.ts';
import { hashServiceKey } from '../../extproc/core/control/service-key.ts';
import type { ControlStore, MutationContext } from '../../extproc/core/control/store.ts';
import { migrateControl } from '../../extproc/adapters/control-store/migrations.ts';
import type { QueryRunner, Sql } from '../../extproc/adapters/control-store/query-runner.ts';
import { SqlControlStore } from '../../extproc/adapters/control-store/sql-store.ts';

export interface StoreHarness {
  /** A runner over a fresh database the suite may migrate and write. */
  readonly runner: QueryRunner;
}

const ctx: MutationContext = { actor: 'user:admin' };
const kek = (id: string) => ({ id, key: new Uint8Array(randomBytes(32)) });
const k1 = kek('k1');
const k2 = kek('k2');
const uniq = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;
const providerToken = () => `sk_live_${randomBytes(24).toString('base64url')}`;

/** A runner that fails the first statement matching `pattern`, as a lost connection would. */
function failingOn(runner: QueryRunner, pattern: RegExp): QueryRunner {
  return {
    transaction: (fn) =>
      runner.transaction((sql) => {
        const faulty: Sql = {
          query: (text, params) => (pattern.test(text) ? Promise.reject(new Error('injected failure')) : sql.query(text, params)),
          exec: (text) => sql.exec(text),
        };
        return fn(faulty);
      }),
    close: () => runner.close(),
  };
}

/**
 * A runner whose transactions pause after their first statement matching `pattern` until
 * `parties` transactions have reached that point, or `maxWaitMs` passed — so two writers really
 * read the same row before either writes, unless the store serialises them (then the first one
 * waits out the timeout alone).
 */
function meetingAfter(runner: QueryRunner, pattern: RegExp, parties: number, maxWaitMs: number): QueryRunner {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((r) => (release = r));
  return {
    transaction: (fn) =>
      runner.transaction((sql) => {
        let met = false;
        return fn({
          query: async (text, params) => {
            const rows = await sql.query(text, params);
            if (!met && pattern.test(text)) {
              met = true;
              if (++arrived === parties) release();
              await Promise.race([all, new Promise((r) => setTimeout(r, maxWaitMs))]);
            }
            return rows as never;
          },
          exec: (text) => sql.exec(text),
        });
      }),
    close: () => runner.close(),
  };
}

export function storeContract(name: string, harness: () => StoreHarness): void {
  describe(`ControlStore contract: ${name}`, () => {
    let h: StoreHarness;
    let store: ControlStore;
    const clock = { now: new Date('2030-01-01T00:00:00.000Z') };
    const makeStore = (keys = [k1], runner?: QueryRunner) =>
      new SqlControlStore(runner ?? h.runner, { keyring: new Keyring(keys), now: () => clock.now });

    /** Every row of every control table, as PostgreSQL prints it (bytea as \x hex). */
    async function everyRow(): Promise<string> {
      return h.runner.transaction(async (sql) => {
        const tables = await sql.query<{ t: string }>(
          "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'control' ORDER BY 1",
        );
        expect(tables.map((t) => t.t)).toEqual(expect.arrayContaining(['accounts', 'account_secrets', 'audit_events', 'service_keys']));
        let out = '';
        for (const { t } of tables) {
          for (const r of await sql.query<{ row: string }>(`SELECT x::text AS row FROM control.${t} x`)) out += `${t}: ${r.row}\n`;
        }
        return out;
      });
    }

    beforeAll(async () => {
      h = harness();
      expect(await migrateControl(h.runner)).toEqual([1, 2]);
      store = makeStore();
    });

    it('migrations are idempotent: a second run applies nothing and keeps the data', async () => {
      const acc = uniq('mig');
      await store.createAccount({ name: acc }, ctx);
      const before = await store.currentRevision();
      expect(await migrateControl(h.runner)).toEqual([]);
      expect(await store.getAccount(acc)).toBeDefined();
      expect(await store.currentRevision()).toBe(before);
    });

    it('accounts: create, get, update with the row version, delete; each change one audit row and one revision', async () => {
      const name = uniq('acct');
      const r0 = await store.currentRevision();
      const { value: created, created: isNew } = await store.createAccount({ name, concurrencyUnits: 3 }, ctx);
      expect(isNew).toBe(true);
      expect(created).toMatchObject({ name, provider: 'smallest', baseUrl: null, concurrencyUnits: 3, wsPerUnit: 5, version: 1 });
      expect(created.secret).toEqual({ set: false, last4: null, fingerprint: null, updatedAt: null });
      expect(await store.getAccount(name)).toEqual(created);
      expect(await store.currentRevision()).toBe(r0 + 1);

      const updated = await store.updateAccount(name, { baseUrl: 'https://eu.api.smallest.ai', wsPerUnit: 3 }, 1, ctx);
      expect(updated).toMatchObject({ baseUrl: 'https://eu.api.smallest.ai', wsPerUnit: 3, concurrencyUnits: 3, version: 2 });
      expect(await store.currentRevision()).toBe(r0 + 2);

      await store.deleteAccount(name, ctx, 2);
      expect(await store.getAccount(name)).toBeUndefined();
      expect(await store.currentRevision()).toBe(r0 + 3);

      const events = (await store.listAuditEvents({ resource: 'account', resourceKey: name })).items;
      expect(events.map((e) => [e.action, e.revision, e.actor])).toEqual([
        ['account.delete', r0 + 3, 'user:admin'],
        ['account.update', r0 + 2, 'user:admin'],
        ['account.create', r0 + 1, 'user:admin'],
      ]);
      expect(events[1]!.before).toMatchObject({ baseUrl: null, version: 1 });
      expect(events[1]!.after).toMatchObject({ baseUrl: 'https://eu.api.smallest.ai', version: 2 });
      expect(events[0]!.after).toBeNull();
    });

    it('a stale row version is a typed conflict and changes nothing', async () => {
      const name = uniq('occ');
      await store.createAccount({ name }, ctx);
      await store.updateAccount(name, { concurrencyUnits: 2 }, 1, ctx);
      const rev = await store.currentRevision();
      const err = await store.updateAccount(name, { concurrencyUnits: 9 }, 1, ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VersionConflictError);
      expect(err).toMatchObject({ resource: 'account', key: name, expectedVersion: 1, actualVersion: 2 });
      await expect(store.deleteAccount(name, ctx, 1)).rejects.toBeInstanceOf(VersionConflictError);
      expect((await store.getAccount(name))!.concurrencyUnits).toBe(2);
      expect(await store.currentRevision()).toBe(rev);
      await expect(store.updateAccount(uniq('missing'), {}, 1, ctx)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('two writers with the same version: exactly one wins, the other gets a conflict', async () => {
      const name = uniq('race');
      await store.createAccount({ name }, ctx);
      const meeting = meetingAfter(h.runner, /FROM control\.accounts a/, 2, 500);
      const results = await Promise.allSettled([
        makeStore([k1], meeting).updateAccount(name, { concurrencyUnits: 4 }, 1, ctx),
        makeStore([k1], meeting).updateAccount(name, { concurrencyUnits: 5 }, 1, ctx),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]!.reason).toBeInstanceOf(VersionConflictError);
      expect((await store.getAccount(name))!.version).toBe(2);
    });

    it('parallel changes get distinct, gap-free revisions, one audit row each', async () => {
      const r0 = await store.currentRevision();
      const names = Array.from({ length: 8 }, () => uniq('par'));
      await Promise.all(names.map((n) => makeStore().createTeam({ name: n }, ctx)));
      expect(await store.currentRevision()).toBe(r0 + 8);
      const revisions: number[] = [];
      for (const n of names) {
        const ev = (await store.listAuditEvents({ resource: 'team', resourceKey: n })).items;
        expect(ev).toHaveLength(1);
        revisions.push(ev[0]!.revision);
      }
      expect(revisions.sort((a, b) => a - b)).toEqual(Array.from({ length: 8 }, (_, i) => r0 + 1 + i));
    });

    it('create is idempotent when identical; the same name with other content is a duplicate naming the field', async () => {
      const name = uniq('idem');
      const token = providerToken();
      const first = await store.createAccount({ name, token, concurrencyUnits: 2 }, ctx);
      const rev = await store.currentRevision();
      const again = await store.createAccount({ name, token, concurrencyUnits: 2 }, ctx);
      expect(again.created).toBe(false);
      expect(again.value).toEqual(first.value);
      expect(await store.currentRevision()).toBe(rev);
      expect((await store.listAuditEvents({ resource: 'account', resourceKey: name })).items).toHaveLength(1);

      for (const different of [{ name, token, concurrencyUnits: 3 }, { name, token: providerToken(), concurrencyUnits: 2 }, { name, concurrencyUnits: 2 }]) {
        const err = await store.createAccount(different, ctx).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DuplicateError);
        expect(err).toMatchObject({ resource: 'account', field: 'name', value: name });
        expect(String((err as Error).message)).not.toContain(token);
      }
      expect(await store.currentRevision()).toBe(rev);

      const team = uniq('team');
      await store.createTeam({ name: team, description: 'a' }, ctx);
      expect((await store.createTeam({ name: team, description: 'a' }, ctx)).created).toBe(false);
      await expect(store.createTeam({ name: team, description: 'b' }, ctx)).rejects.toMatchObject({ name: 'DuplicateError', field: 'name' });
      const sa = uniq('svc');
      await store.createServiceAccount({ name: sa }, ctx);
      await expect(store.createServiceAccount({ name: sa, description: 'x' }, ctx)).rejects.toMatchObject({ name: 'DuplicateError', resource: 'service_account' });
    });

    it('invalid input is refused naming the field, before anything is written', async () => {
      const rev = await store.currentRevision();
      const cases: [() => Promise<unknown>, string][] = [
        [() => store.createAccount({ name: 'no spaces allowed' }, ctx), 'name'],
        [() => store.createAccount({ name: uniq('a'), concurrencyUnits: 0 }, ctx), 'concurrencyUnits'],
        [() => store.createAccount({ name: uniq('a'), baseUrl: 'ftp://x' }, ctx), 'baseUrl'],
        [() => store.createAccount({ name: uniq('a'), token: 'sk_with_newline\n' }, ctx), 'token'],
        [() => store.createTeam({ name: uniq('t'), extra: 1 } as never, ctx), ''],
      ];
      for (const [call, field] of cases) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InvalidInputError);
        expect((err as InvalidInputError).field).toBe(field);
        expect((err as Error).message).not.toContain('sk_with_newline');
      }
      const acc = uniq('m');
      await store.createAccount({ name: acc }, ctx);
      const err = await store.createModel(acc, { modelId: 'pulse', type: 'stt', price: { perMinute: '-1' } }, ctx).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'InvalidInputError', field: 'price.perMinute' });
      expect(await store.currentRevision()).toBe(rev + 1);
    });

    it('a change that fails inside its transaction leaves no row, no audit event and no revision bump', async () => {
      const rev = await store.currentRevision();
      for (const step of [/INSERT INTO control\.audit_events/, /UPDATE control\.state/, /INSERT INTO control\.revisions/]) {
        const broken = makeStore([k1], failingOn(h.runner, step));
        const name = uniq('atomic');
        await expect(broken.createAccount({ name, token: providerToken() }, ctx)).rejects.toThrow('injected failure');
        expect(await store.getAccount(name)).toBeUndefined();
        expect((await store.listAuditEvents({ resource: 'account', resourceKey: name })).items).toEqual([]);
      }
      const acc = uniq('atomic');
      await store.createAccount({ name: acc }, ctx);
      const broken = makeStore([k1], failingOn(h.runner, /INSERT INTO control\.audit_events/));
      await expect(broken.setAccountSecret(acc, providerToken(), ctx)).rejects.toThrow('injected failure');
      await expect(broken.updateAccount(acc, { concurrencyUnits: 7 }, 1, ctx)).rejects.toThrow('injected failure');
      const after = (await store.getAccount(acc))!;
      expect(after).toMatchObject({ version: 1, concurrencyUnits: 1, secret: { set: false } });
      expect(await store.currentRevision()).toBe(rev + 1);
    });

    it('collaborators: add, idempotent re-add, role change with version, duplicate, remove; cascade on account delete', async () => {
      const acc = uniq('collab');
      await store.createAccount({ name: acc }, ctx);
      const { value: c } = await store.addCollaborator(acc, { subject: 'team:voice', role: 'user' }, ctx);
      expect(c).toMatchObject({ account: acc, subject: 'team:voice', role: 'user', version: 1 });
      expect((await store.addCollaborator(acc, { subject: 'team:voice', role: 'user' }, ctx)).created).toBe(false);
      await expect(store.addCollaborator(acc, { subject: 'team:voice', role: 'manager' }, ctx)).rejects.toMatchObject({ name: 'DuplicateError', field: 'subject' });
      await expect(store.addCollaborator(acc, { subject: 'group:x' as never, role: 'user' }, ctx)).rejects.toMatchObject({ field: 'subject' });
      await expect(store.addCollaborator(uniq('nope'), { subject: 'user:a', role: 'user' }, ctx)).rejects.toMatchObject({ name: 'NotFoundError', resource: 'account' });
      const promoted = await store.updateCollaborator(acc, 'team:voice', { role: 'manager' }, 1, ctx);
      expect(promoted).toMatchObject({ role: 'manager', version: 2 });
      await expect(store.updateCollaborator(acc, 'team:voice', { role: 'user' }, 1, ctx)).rejects.toBeInstanceOf(VersionConflictError);
      await store.addCollaborator(acc, { subject: 'service:ci', role: 'user' }, ctx);
      await store.removeCollaborator(acc, 'service:ci', ctx);
      expect(await store.getCollaborator(acc, 'service:ci')).toBeUndefined();
      await expect(store.removeCollaborator(acc, 'service:ci', ctx)).rejects.toBeInstanceOf(NotFoundError);
      await store.createModel(acc, { modelId: 'pulse', type: 'stt' }, ctx);

      await store.deleteAccount(acc, ctx);
      expect(await store.getCollaborator(acc, 'team:voice')).toBeUndefined();
      expect((await store.listModels({ modelId: 'pulse' })).items.some((m) => m.account === acc)).toBe(false);
      const del = (await store.listAuditEvents({ resource: 'account', resourceKey: acc })).items[0]!;
      expect(del.action).toBe('account.delete');
      expect(del.before).toMatchObject({ collaborators: [{ subject: 'team:voice', role: 'manager' }], models: [{ modelId: 'pulse' }] });
    });

    it('models: the YAML price shape kept exactly, one model id on several accounts, alias clashes refused', async () => {
      const a = uniq('ma');
      const b = uniq('mb');
      await store.createAccount({ name: a }, ctx);
      await store.createAccount({ name: b }, ctx);
      const price = { perThousandChars: '0.01950' };
      const { value: m } = await store.createModel(a, { modelId: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price }, ctx);
      expect(m).toMatchObject({ account: a, modelId: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price, version: 1 });
      expect((await store.createModel(a, { modelId: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price }, ctx)).created).toBe(false);
      await expect(store.createModel(a, { modelId: 'lightning-v3.1', type: 'tts', price }, ctx)).rejects.toMatchObject({ name: 'DuplicateError', field: 'modelId' });
      expect((await store.createModel(b, { modelId: 'lightning-v3.1', type: 'tts', price: { perThousandChars: '0.02' } }, ctx)).created).toBe(true);
      await expect(store.createModel(a, { modelId: 'lightning-v3.1-pro', type: 'tts', aliases: ['lightning_v3.1'] }, ctx))
        .rejects.toMatchObject({ name: 'DuplicateError', field: 'aliases', value: 'lightning_v3.1' });
      await expect(store.createModel(a, { modelId: 'lightning_v3.1', type: 'tts' }, ctx)).rejects.toMatchObject({ field: 'modelId' });

      const both = await store.listModels({ modelId: 'lightning-v3.1' });
      expect(both.items.filter((x) => x.account === a || x.account === b).map((x) => x.account)).toEqual([a, b].sort());
      const updated = await store.updateModel(a, 'lightning-v3.1', { price: { perThousandChars: '0.0195', perMinute: '1' } }, 1, ctx);
      expect(updated).toMatchObject({ price: { perThousandChars: '0.0195', perMinute: '1' }, aliases: ['lightning_v3.1'], version: 2 });
      await expect(store.updateModel(a, 'lightning-v3.1', { type: 'stt' }, 1, ctx)).rejects.toBeInstanceOf(VersionConflictError);
      await store.deleteModel(a, 'lightning-v3.1', ctx, 2);
      expect(await store.getModel(a, 'lightning-v3.1')).toBeUndefined();
      expect(await store.getModel(b, 'lightning-v3.1')).toBeDefined();
    });

    it('models: max_session_seconds is set, kept by an unrelated update, changed, cleared with null, and bounded', async () => {
      const a = uniq('mss');
      await store.createAccount({ name: a }, ctx);
      const { value: m } = await store.createModel(a, { modelId: 'pulse', type: 'stt', maxSessionSeconds: 1800 }, ctx);
      expect(m).toMatchObject({ modelId: 'pulse', maxSessionSeconds: 1800, version: 1 });
      // Creating it again is idempotent only with the same bound.
      expect((await store.createModel(a, { modelId: 'pulse', type: 'stt', maxSessionSeconds: 1800 }, ctx)).created).toBe(false);
      await expect(store.createModel(a, { modelId: 'pulse', type: 'stt' }, ctx)).rejects.toMatchObject({ name: 'DuplicateError' });
      expect((await store.updateModel(a, 'pulse', { aliases: ['pulse_v1'] }, 1, ctx)).maxSessionSeconds).toBe(1800);
      expect((await store.updateModel(a, 'pulse', { maxSessionSeconds: 600 }, 2, ctx)).maxSessionSeconds).toBe(600);
      expect(await store.getModel(a, 'pulse')).toMatchObject({ maxSessionSeconds: 600, version: 3 });
      expect((await store.loadConfiguration()).models.find((x) => x.account === a)).toMatchObject({ maxSessionSeconds: 600 });
      expect((await store.updateModel(a, 'pulse', { maxSessionSeconds: null }, 3, ctx)).maxSessionSeconds).toBeNull();
      const { value: plain } = await store.createModel(a, { modelId: 'lightning-v3.1', type: 'tts' }, ctx);
      expect(plain.maxSessionSeconds).toBeNull();
      for (const bad of [0, -5, 1.5, 604_801]) {
        await expect(store.updateModel(a, 'pulse', { maxSessionSeconds: bad }, 4, ctx)).rejects.toMatchObject({ name: 'InvalidInputError', field: 'maxSessionSeconds' });
        await expect(store.createModel(a, { modelId: 'x1', type: 'tts', maxSessionSeconds: bad }, ctx)).rejects.toMatchObject({ field: 'maxSessionSeconds' });
      }
      expect(await store.getModel(a, 'pulse')).toMatchObject({ maxSessionSeconds: null, version: 4 });
    });

    it('cursor pagination walks every row once in order; foreign and forged cursors are refused', async () => {
      const acc = uniq('page');
      await store.createAccount({ name: acc }, ctx);
      const subjects = Array.from({ length: 7 }, (_, i) => `user:u${i}`);
      for (const s of [...subjects].reverse()) await store.addCollaborator(acc, { subject: s as `user:${string}`, role: 'user' }, ctx);
      const seen: string[] = [];
      const sizes: number[] = [];
      let cursor: string | null = null;
      do {
        const page = await store.listCollaborators(acc, { limit: 3, cursor });
        sizes.push(page.items.length);
        seen.push(...page.items.map((c) => c.subject));
        cursor = page.nextCursor;
      } while (cursor);
      expect(seen).toEqual(subjects);
      expect(sizes).toEqual([3, 3, 1]);

      const team = uniq('pt');
      await store.createTeam({ name: team }, ctx);
      for (const m of ['carol', 'alice', 'service:ci', 'bob']) await store.addTeamMember(team, m, ctx);
      expect((await store.addTeamMember(team, 'bob', ctx)).created).toBe(false);
      const p1 = await store.listTeamMembers(team, { limit: 2 });
      const p2 = await store.listTeamMembers(team, { limit: 2, cursor: p1.nextCursor });
      expect([...p1.items, ...p2.items].map((m) => m.member)).toEqual(['alice', 'bob', 'carol', 'service:ci']);
      expect(p2.nextCursor).toBeNull();
      await store.removeTeamMember(team, 'bob', ctx);
      await expect(store.removeTeamMember(team, 'bob', ctx)).rejects.toBeInstanceOf(NotFoundError);

      await expect(store.listTeamMembers(team, { cursor: p1.nextCursor! + 'x' })).rejects.toBeInstanceOf(InvalidCursorError);
      const firstAccounts = await store.listAccounts({ limit: 1 });
      await expect(store.listCollaborators(acc, { cursor: firstAccounts.nextCursor })).rejects.toBeInstanceOf(InvalidCursorError);
      await expect(store.listAccounts({ cursor: 'bm90LWpzb24' })).rejects.toBeInstanceOf(InvalidCursorError);
      await expect(store.listAccounts({ limit: 0 })).rejects.toMatchObject({ name: 'InvalidInputError', field: 'page.limit' });

      const all: string[] = [];
      let c: string | null = null;
      do {
        const page = await store.listAccounts({ limit: 4, cursor: c });
        all.push(...page.items.map((a) => a.name));
        c = page.nextCursor;
      } while (c);
      expect(new Set(all).size).toBe(all.length);
      expect([...all].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))).toEqual(all);
      expect(all).toContain(acc);
    });

    it('secrets: stored sealed, shown as {set, last4, fingerprint, updatedAt}, rotated to a new version, opened from loadConfiguration', async () => {
      const name = uniq('sec');
      const token = providerToken();
      const { value } = await store.createAccount({ name, token }, ctx);
      expect(value.secret).toEqual({ set: true, last4: token.slice(-4), fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{16}$/), updatedAt: clock.now.toISOString() });
      expect(JSON.stringify(value)).not.toContain(token);

      const cfg = await store.loadConfiguration();
      const sealed = cfg.accounts.find((a) => a.name === name)!.sealedSecret!;
      expect(sealed).toMatchObject({ accountId: value.id, version: 1, kekId: 'k1' });
      expect(new Keyring([k1]).open(sealed, sealed)).toBe(token);

      const next = providerToken();
      const rotated = await store.setAccountSecret(name, next, ctx, 1);
      expect(rotated.version).toBe(2);
      expect(rotated.secret.fingerprint).not.toBe(value.secret.fingerprint);
      await expect(store.setAccountSecret(name, providerToken(), ctx, 1)).rejects.toBeInstanceOf(VersionConflictError);
      const sealed2 = (await store.loadConfiguration()).accounts.find((a) => a.name === name)!.sealedSecret!;
      expect(sealed2.version).toBe(2);
      expect(new Keyring([k1]).open(sealed2, sealed2)).toBe(next);
      // The old ciphertext is bound to version 1 and does not open as version 2.
      expect(() => new Keyring([k1]).open(sealed, { ...sealed, version: 2 })).toThrow(SecretDecryptError);

      const audit = (await store.listAuditEvents({ resource: 'account_secret', resourceKey: name })).items[0]!;
      expect(audit.action).toBe('account_secret.rotate');
      expect(audit.after).toMatchObject({ set: true, fingerprint: rotated.secret.fingerprint });

      const rows = await everyRow();
      for (const t of [token, next]) {
        expect(rows).not.toContain(t);
        expect(rows).not.toContain(Buffer.from(t).toString('hex'));
        expect(rows).not.toContain(Buffer.from(t).toString('base64'));
      }
    });

    it('KEK rotation rewraps every data key, leaves ciphertexts and plaintexts unchanged, and the old KEK can be retired', async () => {
      const name = uniq('rewrap');
      const token = providerToken();
      await store.createAccount({ name, token }, ctx);
      const before = (await store.loadConfiguration()).accounts.find((a) => a.name === name)!.sealedSecret!;

      const rotated = makeStore([k2, k1]);
      const rev = await store.currentRevision();
      expect(await rotated.rewrapSecrets(ctx)).toBeGreaterThanOrEqual(1);
      expect(await store.currentRevision()).toBe(rev + 1);
      expect(await rotated.rewrapSecrets(ctx)).toBe(0);
      expect(await store.currentRevision()).toBe(rev + 1);

      const cfg = await store.loadConfiguration();
      const after = cfg.accounts.find((a) => a.name === name)!.sealedSecret!;
      expect(after.kekId).toBe('k2');
      expect(Buffer.from(after.ciphertext).equals(Buffer.from(before.ciphertext))).toBe(true);
      expect(Buffer.from(after.wrappedKey).equals(Buffer.from(before.wrappedKey))).toBe(false);
      expect(new Keyring([k2]).open(after, after)).toBe(token);
      for (const a of cfg.accounts) if (a.sealedSecret) expect(a.sealedSecret.kekId).toBe('k2');
      expect(() => new Keyring([k1]).open(after, after)).toThrow(expect.objectContaining({ reason: 'unknown_kek' }));
      // A store holding only the wrong key under the right id refuses to compare tokens.
      const wrong = makeStore([{ id: 'k2', key: new Uint8Array(randomBytes(32)) }]);
      await expect(wrong.createAccount({ name, token }, ctx)).rejects.toMatchObject({ name: 'SecretDecryptError', reason: 'wrong_kek_or_tampered_key' });
      const audit = (await store.listAuditEvents({ resource: 'account_secret', resourceKey: name })).items[0]!;
      expect(audit).toMatchObject({ action: 'account_secret.rewrap', before: { kekId: 'k1' }, after: { kekId: 'k2' } });
      // The suite's other cases keep using k1 alone: put the secrets back under it.
      expect(await makeStore([k1, k2]).rewrapSecrets(ctx)).toBeGreaterThanOrEqual(1);
    });

    it('service keys: plaintext once, hash only at rest, lookup by hash, rotation grace, revocation, expiry', async () => {
      const sa = uniq('svc');
      const { value: account } = await store.createServiceAccount({ name: sa, description: 'CI' }, ctx);
      expect(account.subject).toBe(`service:${sa}`);
      const first = await store.createServiceKey(sa, {}, ctx);
      expect(first.plaintext).toMatch(/^vg_[A-Za-z0-9_-]{43}$/);
      expect(first.key).toMatchObject({ serviceAccount: sa, hint: first.plaintext.slice(0, 7), expiresAt: null, revokedAt: null });
      expect(JSON.stringify(first.key)).not.toContain(first.plaintext);

      const found = await store.findServiceKeyByHash(hashServiceKey(first.plaintext));
      expect(found).toMatchObject({ valid: true, serviceAccount: { name: sa }, key: { id: first.key.id } });
      expect(await store.findServiceKeyByHash(hashServiceKey(first.plaintext + 'x'))).toBeUndefined();
      expect(await store.findServiceKeyByHash(first.plaintext)).toBeUndefined();

      const second = await store.rotateServiceKey(sa, first.key.id, { graceSeconds: 60 }, ctx);
      expect((await store.findServiceKeyByHash(hashServiceKey(first.plaintext)))!.valid).toBe(true);
      expect((await store.findServiceKeyByHash(hashServiceKey(second.plaintext)))!.valid).toBe(true);
      const keys = (await store.listServiceKeys(sa)).items;
      expect(keys.map((k) => k.id)).toEqual([first.key.id, second.key.id]);
      const p1 = await store.listServiceKeys(sa, { limit: 1 });
      const p2 = await store.listServiceKeys(sa, { limit: 1, cursor: p1.nextCursor });
      expect([...p1.items, ...p2.items].map((k) => k.id)).toEqual([first.key.id, second.key.id]);
      expect(p2.nextCursor).toBeNull();
      expect(keys[0]).toMatchObject({ replacedBy: second.key.id, graceUntil: new Date(clock.now.getTime() + 60_000).toISOString() });
      await expect(store.rotateServiceKey(sa, first.key.id, { graceSeconds: 0 }, ctx)).rejects.toBeInstanceOf(InvalidStateError);
      const during = (await store.loadConfiguration()).serviceAccounts.find((s) => s.name === sa)!;
      expect(during.keys.map((k) => k.hash).sort()).toEqual([hashServiceKey(first.plaintext), hashServiceKey(second.plaintext)].sort());

      const saved = clock.now;
      try {
        clock.now = new Date(saved.getTime() + 61_000);
        expect((await store.findServiceKeyByHash(hashServiceKey(first.plaintext)))!.valid).toBe(false);
        expect((await store.findServiceKeyByHash(hashServiceKey(second.plaintext)))!.valid).toBe(true);
        const after = (await store.loadConfiguration()).serviceAccounts.find((s) => s.name === sa)!;
        expect(after.keys.map((k) => k.hash)).toEqual([hashServiceKey(second.plaintext)]);

        const revoked = await store.revokeServiceKey(sa, second.key.id, ctx);
        expect(revoked.revokedAt).toBe(clock.now.toISOString());
        expect((await store.findServiceKeyByHash(hashServiceKey(second.plaintext)))!.valid).toBe(false);
        await expect(store.rotateServiceKey(sa, second.key.id, { graceSeconds: 10 }, ctx)).rejects.toBeInstanceOf(InvalidStateError);

        const expiring = await store.createServiceKey(sa, { expiresAt: new Date(clock.now.getTime() + 5_000).toISOString() }, ctx);
        expect((await store.findServiceKeyByHash(hashServiceKey(expiring.plaintext)))!.valid).toBe(true);
        clock.now = new Date(clock.now.getTime() + 5_000);
        expect((await store.findServiceKeyByHash(hashServiceKey(expiring.plaintext)))!.valid).toBe(false);
        await expect(store.createServiceKey(sa, { expiresAt: '2000-01-01T00:00:00Z' }, ctx)).rejects.toMatchObject({ field: 'expiresAt' });
      } finally {
        clock.now = saved;
      }
      await expect(store.revokeServiceKey(sa, 'not-a-uuid', ctx)).rejects.toBeInstanceOf(NotFoundError);

      const rows = await everyRow();
      expect(rows).toContain(hashServiceKey(first.plaintext));
      for (const p of [first.plaintext, second.plaintext]) expect(rows).not.toContain(p);
      const actions = (await store.listAuditEvents({ resource: 'service_key' })).items.filter((e) => e.resourceKey.startsWith(`${sa}/`)).map((e) => e.action);
      expect(actions).toEqual(['service_key.create', 'service_key.revoke', 'service_key.rotate', 'service_key.create', 'service_key.create']);

      const acc = uniq('svc-acc');
      const team = uniq('svc-team');
      await store.createAccount({ name: acc }, ctx);
      await store.addCollaborator(acc, { subject: `service:${sa}`, role: 'user' }, ctx);
      await store.createTeam({ name: team }, ctx);
      await store.addTeamMember(team, `service:${sa}`, ctx);
      await store.deleteServiceAccount(sa, ctx);
      expect(await store.findServiceKeyByHash(hashServiceKey(second.plaintext))).toBeUndefined();
      // Its grants go with it: a new service account of the same name starts with none.
      await store.createServiceAccount({ name: sa }, ctx);
      expect(await store.getCollaborator(acc, `service:${sa}`)).toBeUndefined();
      expect((await store.listTeamMembers(team)).items).toEqual([]);
      const del = (await store.listAuditEvents({ resource: 'service_account', resourceKey: sa })).items[1]!;
      expect(del).toMatchObject({ action: 'service_account.delete', before: { collaborators: [{ account: acc, role: 'user' }], teams: [team] } });
    });

    it('loadConfiguration: one consistent view at the current revision, with members, collaborators and models', async () => {
      const acc = uniq('load');
      const team = uniq('lt');
      await store.createAccount({ name: acc, token: providerToken(), concurrencyUnits: 4, wsPerUnit: 3 }, ctx);
      await store.addCollaborator(acc, { subject: `team:${team}`, role: 'user' }, ctx);
      await store.createModel(acc, { modelId: 'pulse', type: 'stt', price: { perMinute: '0.0035', perMinuteStreaming: '0.006' } }, ctx);
      await store.createTeam({ name: team }, ctx);
      await store.addTeamMember(team, 'alice', ctx);
      const cfg = await store.loadConfiguration();
      expect(cfg.revision).toBe(await store.currentRevision());
      const a = cfg.accounts.find((x) => x.name === acc)!;
      expect(a).toMatchObject({ concurrencyUnits: 4, wsPerUnit: 3, collaborators: [{ subject: `team:${team}`, role: 'user' }] });
      expect(a.sealedSecret).not.toBeNull();
      expect(cfg.models.find((m) => m.account === acc)).toMatchObject({ modelId: 'pulse', price: { perMinute: '0.0035', perMinuteStreaming: '0.006' } });
      expect(cfg.teams.find((t) => t.name === team)!.members).toEqual(['alice']);
    });

    it('no row of any table holds a provider token or a service key in plaintext', async () => {
      const token = providerToken();
      const acc = uniq('scan');
      await store.createAccount({ name: acc, token }, ctx);
      await store.setAccountSecret(acc, `${token}-2`, ctx);
      const sa = uniq('scan');
      await store.createServiceAccount({ name: sa }, ctx);
      const { plaintext } = await store.createServiceKey(sa, {}, ctx);
      const rows = await everyRow();
      expect(rows).toContain(acc);
      for (const secret of [token, `${token}-2`, plaintext]) {
        expect(rows).not.toContain(secret);
        expect(rows).not.toContain(Buffer.from(secret).toString('hex'));
      }
    });
  });
}
