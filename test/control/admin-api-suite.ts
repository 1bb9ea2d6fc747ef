/**
 * The admin API contract (api-routes.md), run against every store engine: admin-api.test.ts
 * (PGlite in memory) and admin-api-pg.test.ts (a fresh PostgreSQL database). Every answer and
 * every audit row is kept and searched for the provider tokens at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createAdminApp, type AdminApp } from '../../extproc/adapters/admin-api/app.ts';
import { bootstrapAdmin } from '../../extproc/adapters/admin-api/bootstrap.ts';
import { dataPlaneCheck } from '../../extproc/adapters/admin-api/data-plane-check.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import type { ControlStore } from '../../extproc/core/control/store.ts';
import { IdentityVerifier } from '../../extproc/core/identity/identity.ts';
import type { IssuerConfig } from '../../extproc/core/config/snapshot.ts';
import { claims, makeKey, sign, type TestKey } from '../authz/fixtures.ts';

const ISS = 'https://idp.admin.test/';
export const TOKEN_A = 'sk_live_AAAAsecretAAAA_0123456789';
export const TOKEN_A2 = 'sk_live_AAAArotatedAAAA_987654321';
export const TOKEN_B = 'sk_live_BBBBsecretBBBB_0123456789';
const TOKEN_APPLY = 'sk_live_APPLYsecret_0123456789abc';
const SECRETS = [TOKEN_A, TOKEN_A2, TOKEN_B, TOKEN_APPLY];

export interface Engine {
  readonly store: ControlStore;
  /** The store's key-encryption key: the configuration check opens the tokens as the publisher does. */
  readonly kek: Keyring;
  close(): Promise<void>;
}

function issuer(key: TestKey): IssuerConfig {
  return {
    issuer: ISS,
    audiences: ['voicegate'],
    jwks: { keys: [key.jwk] },
    algorithms: ['ES256'],
    userClaim: 'sub',
    teamsClaim: 'teams',
    rolesClaim: 'roles',
    clockToleranceSec: 30,
  };
}

export function adminApiSuite(label: string, open: () => Promise<Engine>): void {
  describe(`admin API on ${label}`, () => {
    let engine: Engine;
    let app: AdminApp;
    let storeDown = false;
    const seen: string[] = [];
    const jwt: Record<string, string> = {};
    let bootstrapKey: string;
    let ciKey: string;

    interface Answer {
      status: number;
      headers: Headers;
      body: any;
      text: string;
    }
    async function call(method: string, path: string, o: { as?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      const as = o.as === undefined ? 'admin' : o.as;
      if (as !== null) headers['authorization'] = `Bearer ${jwt[as] ?? as}`;
      let body: string | undefined;
      if (o.raw !== undefined) body = o.raw;
      else if (o.body !== undefined) {
        body = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      seen.push(text, JSON.stringify([...res.headers]));
      let parsed: unknown = undefined;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = text;
      }
      return { status: res.status, headers: res.headers, body: parsed, text };
    }
    const etag = (a: Answer) => a.headers.get('etag')!;
    function expectProblem(a: Answer, status: number, field?: string) {
      expect(a.status, a.text).toBe(status);
      expect(a.headers.get('content-type')).toBe('application/problem+json');
      expect(a.body).toMatchObject({ status, type: expect.stringMatching(/^urn:voicegate:problem:/), title: expect.any(String), detail: expect.any(String) });
      if (field !== undefined) expect(a.body.field).toBe(field);
    }

    beforeAll(async () => {
      engine = await open();
      const key = await makeKey('ES256');
      const signAs = (user: string, teams: string[] = [], roles: string[] = []) => sign(key, claims(ISS, user, teams, { roles }));
      jwt['admin'] = await signAs('root', [], ['voicegate-admin']);
      jwt['alice'] = await signAs('alice'); // manager of acct-a by user
      jwt['carol'] = await signAs('carol'); // manager of acct-a through store team `ops`
      jwt['dave'] = await signAs('dave', ['voice']); // manager of acct-a through the token's team `voice`
      jwt['bob'] = await signAs('bob'); // plain user (collaborator role user)
      jwt['mallory'] = await signAs('mallory');
      jwt['otherRole'] = await signAs('eve', [], ['voicegate-viewer']);
      const real = engine.store;
      // The store as seen by the app: a switch to fail every call (database unreachable).
      const store = new Proxy(real, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver);
          if (typeof v !== 'function') return v;
          return (...args: unknown[]) => {
            if (storeDown) return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      app = createAdminApp({
        store,
        verifier: new IdentityVerifier([issuer(key)]),
        resolveSecret: async (ref) => (ref === 'env:APPLY_TOKEN' ? { ok: true, value: TOKEN_APPLY } : ref === 'env:A_TOKEN' ? { ok: true, value: TOKEN_A2 } : { ok: false, message: `env var ${ref.slice(4)} is not set` }),
        ready: async () => !storeDown,
        checkConfiguration: dataPlaneCheck({ kek: engine.kek, snapshotKey: new Keyring([{ id: 'snap', key: new Uint8Array(32).fill(7) }]) }),
      });
      const boot = await bootstrapAdmin(real);
      expect(boot?.subject).toBe('service:bootstrap-admin');
      bootstrapKey = boot!.key;
      expect(await bootstrapAdmin(real)).toBeUndefined();
    });
    afterAll(async () => {
      await engine?.close();
    });

    it('publishes an OpenAPI 3.1 document with every route, without auth', async () => {
      const a = await call('GET', '/admin/v1/openapi.json', { as: null });
      expect(a.status).toBe(200);
      expect(a.body.openapi).toBe('3.1.0');
      const paths = a.body.paths as Record<string, Record<string, unknown>>;
      const expected: [string, string][] = [
        ['get', '/admin/v1/accounts'], ['post', '/admin/v1/accounts'], ['get', '/admin/v1/accounts/{account}'], ['patch', '/admin/v1/accounts/{account}'],
        ['delete', '/admin/v1/accounts/{account}'], ['put', '/admin/v1/accounts/{account}/token'], ['get', '/admin/v1/accounts/{account}/collaborators'],
        ['post', '/admin/v1/accounts/{account}/collaborators'], ['patch', '/admin/v1/accounts/{account}/collaborators/{subject}'],
        ['delete', '/admin/v1/accounts/{account}/collaborators/{subject}'], ['get', '/admin/v1/accounts/{account}/models'], ['post', '/admin/v1/accounts/{account}/models'],
        ['get', '/admin/v1/accounts/{account}/models/{model_id}'], ['patch', '/admin/v1/accounts/{account}/models/{model_id}'], ['delete', '/admin/v1/accounts/{account}/models/{model_id}'],
        ['get', '/admin/v1/models'], ['get', '/admin/v1/teams'], ['post', '/admin/v1/teams'], ['get', '/admin/v1/teams/{team}'], ['patch', '/admin/v1/teams/{team}'],
        ['delete', '/admin/v1/teams/{team}'], ['get', '/admin/v1/teams/{team}/members'], ['post', '/admin/v1/teams/{team}/members'], ['delete', '/admin/v1/teams/{team}/members/{member}'],
        ['get', '/admin/v1/service-accounts'], ['post', '/admin/v1/service-accounts'], ['get', '/admin/v1/service-accounts/{name}'], ['patch', '/admin/v1/service-accounts/{name}'],
        ['delete', '/admin/v1/service-accounts/{name}'], ['get', '/admin/v1/service-accounts/{name}/keys'], ['post', '/admin/v1/service-accounts/{name}/keys'],
        ['post', '/admin/v1/service-accounts/{name}/keys/{id}/rotate'], ['delete', '/admin/v1/service-accounts/{name}/keys/{id}'], ['get', '/admin/v1/audit-events'],
        ['get', '/admin/v1/usage'], ['put', '/admin/v1/apply'],
      ];
      for (const [m, p] of expected) expect(paths[p]?.[m], `${m} ${p}`).toBeDefined();
      expect(a.body.components.schemas.Account.properties.secret).toBeDefined();
      expect(a.body.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    });

    it('answers 401 problem+json without a token or with a bad one', async () => {
      expectProblem(await call('GET', '/admin/v1/accounts', { as: null }), 401);
      expectProblem(await call('GET', '/admin/v1/accounts', { as: 'not-a-jwt' }), 401);
      expectProblem(await call('GET', '/admin/v1/accounts', { as: `vg_${'x'.repeat(43)}` }), 401);
      const r = await call('GET', '/admin/v1/accounts', { headers: { authorization: 'Basic abc' }, as: null });
      expectProblem(r, 401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    });

    it('accounts: create (201, then 200 identical, 409 different), read, patch with If-Match, token, bad input', async () => {
      const c1 = await call('POST', '/admin/v1/accounts', { body: { name: 'acct-a', concurrency_units: 2, token: TOKEN_A } });
      expect(c1.status, c1.text).toBe(201);
      expect(c1.body).toMatchObject({ name: 'acct-a', provider: 'smallest', base_url: null, concurrency_units: 2, ws_per_unit: 5, version: 1, secret: { set: true, last4: '6789' } });
      expect(etag(c1)).toBe('"1"');
      const again = await call('POST', '/admin/v1/accounts', { body: { name: 'acct-a', concurrency_units: 2, token: TOKEN_A } });
      expect(again.status).toBe(200);
      expectProblem(await call('POST', '/admin/v1/accounts', { body: { name: 'acct-a', concurrency_units: 3 } }), 409, 'name');
      expect((await call('POST', '/admin/v1/accounts', { body: { name: 'acct-b', token: TOKEN_B } })).status).toBe(201);

      expectProblem(await call('POST', '/admin/v1/accounts', { body: { name: 'acct-x', concurrency_units: 0 } }), 400, 'concurrency_units');
      expectProblem(await call('POST', '/admin/v1/accounts', { body: { name: 'acct-x', bogus: 1 } }), 400, 'bogus');
      expectProblem(await call('POST', '/admin/v1/accounts', { body: { name: 'bad name!' } }), 400, 'name');
      expectProblem(await call('POST', '/admin/v1/accounts', { body: { name: 'acct-x', base_url: 'ftp://x' } }), 400, 'base_url');
      expectProblem(await call('POST', '/admin/v1/accounts', { raw: '{"name":', headers: { 'content-type': 'application/json' } }), 400);
      expectProblem(await call('POST', '/admin/v1/accounts', { raw: 'name=x', headers: { 'content-type': 'text/plain' } }), 415);
      expectProblem(await call('GET', '/admin/v1/accounts/nope'), 404);

      const got = await call('GET', '/admin/v1/accounts/acct-a');
      expect(got.status).toBe(200);
      expect(etag(got)).toBe('"1"');
      expectProblem(await call('PATCH', '/admin/v1/accounts/acct-a', { body: { concurrency_units: 4 } }), 428, 'If-Match');
      expectProblem(await call('PATCH', '/admin/v1/accounts/acct-a', { body: { concurrency_units: 4 }, headers: { 'if-match': '"7"' } }), 412, 'If-Match');
      expectProblem(await call('PATCH', '/admin/v1/accounts/acct-a', { body: { concurrency_units: 4 }, headers: { 'if-match': 'seven' } }), 400, 'If-Match');
      expectProblem(await call('PATCH', '/admin/v1/accounts/acct-a', { body: { name: 'renamed' }, headers: { 'if-match': '"1"' } }), 400, 'name');
      const p = await call('PATCH', '/admin/v1/accounts/acct-a', { body: { concurrency_units: 4 }, headers: { 'if-match': '"1"' } });
      expect(p.status, p.text).toBe(200);
      expect(p.body.concurrency_units).toBe(4);
      expect(etag(p)).toBe('"2"');
      expectProblem(await call('PATCH', '/admin/v1/accounts/nope', { body: { concurrency_units: 4 }, headers: { 'if-match': '"1"' } }), 404);

      expectProblem(await call('PUT', '/admin/v1/accounts/acct-a/token', { body: { token: TOKEN_A2 } }), 428, 'If-Match');
      expectProblem(await call('PUT', '/admin/v1/accounts/acct-a/token', { body: { token: 'has space' }, headers: { 'if-match': '"2"' } }), 400, 'token');
      const t = await call('PUT', '/admin/v1/accounts/acct-a/token', { body: { token: TOKEN_A2 }, headers: { 'if-match': '"2"' } });
      expect(t.status, t.text).toBe(200);
      expect(t.body.secret.last4).toBe('4321');
      expect(t.body.secret.fingerprint).not.toBe(c1.body.secret.fingerprint);
      expect(etag(t)).toBe('"3"');

      // Pagination: limit 1 walks both accounts with a cursor; a forged cursor is a 400.
      const first = await call('GET', '/admin/v1/accounts?limit=1');
      expect(first.body.items.map((a: { name: string }) => a.name)).toEqual(['acct-a']);
      expect(first.body.next_cursor).toEqual(expect.any(String));
      const second = await call('GET', `/admin/v1/accounts?limit=1&cursor=${encodeURIComponent(first.body.next_cursor)}`);
      expect(second.body.items.map((a: { name: string }) => a.name)).toEqual(['acct-b']);
      expect(second.body.next_cursor).toBeNull();
      expectProblem(await call('GET', '/admin/v1/accounts?limit=501'), 400, 'limit');
      expectProblem(await call('GET', '/admin/v1/accounts?cursor=garbage'), 400, 'cursor');
    });

    it('collaborators: add, idempotent, role change with If-Match, bad subject, remove', async () => {
      const add = (account: string, subject: string, role: string) => call('POST', `/admin/v1/accounts/${account}/collaborators`, { body: { subject, role } });
      expect((await add('acct-a', 'user:alice', 'manager')).status).toBe(201);
      expect((await add('acct-a', 'user:alice', 'manager')).status).toBe(200);
      expectProblem(await add('acct-a', 'user:alice', 'user'), 409, 'subject');
      expect((await add('acct-a', 'team:ops', 'manager')).status).toBe(201);
      expect((await add('acct-a', 'team:voice', 'manager')).status).toBe(201);
      expect((await add('acct-a', 'user:bob', 'user')).status).toBe(201);
      expect((await add('acct-a', 'service:ci', 'manager')).status).toBe(201);
      expectProblem(await add('acct-a', 'alice', 'user'), 400, 'subject');
      expectProblem(await add('acct-a', 'user:alice', 'owner'), 400, 'role');
      expectProblem(await add('nope', 'user:alice', 'user'), 404);
      const list = await call('GET', '/admin/v1/accounts/acct-a/collaborators');
      expect(list.body.items.map((c: { subject: string }) => c.subject)).toEqual(['service:ci', 'team:ops', 'team:voice', 'user:alice', 'user:bob']);
      expect((await add('acct-b', 'user:zed', 'user')).status).toBe(201);
      const path = `/admin/v1/accounts/acct-b/collaborators/${encodeURIComponent('user:zed')}`;
      expectProblem(await call('PATCH', path, { body: { role: 'manager' } }), 428, 'If-Match');
      expectProblem(await call('PATCH', path, { body: { role: 'manager' }, headers: { 'if-match': '"9"' } }), 412);
      const p = await call('PATCH', path, { body: { role: 'manager' }, headers: { 'if-match': '"1"' } });
      expect(p.status).toBe(200);
      expect(p.body).toMatchObject({ account: 'acct-b', subject: 'user:zed', role: 'manager', version: 2 });
      expectProblem(await call('DELETE', path), 428, 'If-Match');
      expect((await call('DELETE', path, { headers: { 'if-match': '"2"' } })).status).toBe(204);
      expectProblem(await call('DELETE', path, { headers: { 'if-match': '"2"' } }), 404);
    });

    it('models: create, idempotent, price field path, patch, list everywhere, delete', async () => {
      const add = (account: string, body: unknown) => call('POST', `/admin/v1/accounts/${account}/models`, { body });
      const m = await add('acct-a', { model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning'], price: { per_1k_chars: '0.05' } });
      expect(m.status, m.text).toBe(201);
      expect(m.body).toMatchObject({ account: 'acct-a', model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning'], price: { per_1k_chars: '0.05' }, version: 1 });
      expect((await add('acct-a', { model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning'], price: { per_1k_chars: '0.05' } })).status).toBe(200);
      expectProblem(await add('acct-a', { model_id: 'lightning-v3.1', type: 'stt' }), 409, 'model_id');
      expectProblem(await add('acct-a', { model_id: 'pulse', type: 'stt', price: { per_1k_chars: 'cheap' } }), 400, 'price.per_1k_chars');
      expectProblem(await add('acct-a', { model_id: 'pulse', type: 'stt', price: { per_hour: '1' } }), 400, 'price.per_hour');
      expectProblem(await add('acct-a', { model_id: 'pulse', type: 'video' }), 400, 'type');
      expect((await add('acct-a', { model_id: 'pulse', type: 'stt', price: { per_minute: '0.01' } })).status).toBe(201);
      expect((await add('acct-b', { model_id: 'pulse', type: 'stt' })).status).toBe(201);
      const path = '/admin/v1/accounts/acct-a/models/pulse';
      expectProblem(await call('PATCH', path, { body: { aliases: ['p'] } }), 428, 'If-Match');
      const p = await call('PATCH', path, { body: { aliases: ['pulse-1'] }, headers: { 'if-match': '"1"' } });
      expect(p.status, p.text).toBe(200);
      expect(p.body.aliases).toEqual(['pulse-1']);
      expectProblem(await call('PATCH', path, { body: { aliases: ['pulse-2'] }, headers: { 'if-match': '"1"' } }), 412);
      expectProblem(await call('GET', '/admin/v1/accounts/acct-a/models/nope'), 404);
      const all = await call('GET', '/admin/v1/models');
      expect(all.body.items.map((x: { account: string; model_id: string }) => `${x.account}/${x.model_id}`).sort()).toEqual(['acct-a/lightning-v3.1', 'acct-a/pulse', 'acct-b/pulse']);
      const byId = await call('GET', '/admin/v1/models?model_id=pulse');
      expect(byId.body.items).toHaveLength(2);
      const own = await call('GET', '/admin/v1/accounts/acct-b/models');
      expect(own.body.items.map((x: { model_id: string }) => x.model_id)).toEqual(['pulse']);
      expect((await call('DELETE', '/admin/v1/accounts/acct-b/models/pulse', { headers: { 'if-match': '"1"' } })).status).toBe(204);
    });

    it('models: max_session_seconds is optional, set and changed by PATCH, cleared by null; a bad value is a 400 naming it', async () => {
      const path = '/admin/v1/accounts/acct-a/models/lightning-v3.1';
      const before = await call('GET', path);
      expect(before.body.max_session_seconds).toBeNull();
      const v = Number(before.body.version);
      for (const bad of [0, -1, 2.5, 604_801, 'long']) {
        expectProblem(await call('PATCH', path, { body: { max_session_seconds: bad }, headers: { 'if-match': `"${v}"` } }), 400, 'max_session_seconds');
        expectProblem(await call('POST', '/admin/v1/accounts/acct-a/models', { body: { model_id: 'sonic', type: 'tts', max_session_seconds: bad } }), 400, 'max_session_seconds');
      }
      const set = await call('PATCH', path, { body: { max_session_seconds: 1800 }, headers: { 'if-match': `"${v}"` } });
      expect(set.status, set.text).toBe(200);
      expect(set.body).toMatchObject({ max_session_seconds: 1800, version: v + 1, aliases: ['lightning'] });
      // A patch that leaves it out keeps it.
      const kept = await call('PATCH', path, { body: { price: { per_1k_chars: '0.05' } }, headers: { 'if-match': `"${v + 1}"` } });
      expect(kept.body.max_session_seconds).toBe(1800);
      expect((await call('GET', path)).body.max_session_seconds).toBe(1800);
      const cleared = await call('PATCH', path, { body: { max_session_seconds: null }, headers: { 'if-match': `"${v + 2}"` } });
      expect(cleared.body.max_session_seconds).toBeNull();
      const created = await call('POST', '/admin/v1/accounts/acct-a/models', { body: { model_id: 'sonic', type: 'tts', max_session_seconds: 600 } });
      expect(created.status, created.text).toBe(201);
      expect(created.body.max_session_seconds).toBe(600);
      expect((await call('DELETE', '/admin/v1/accounts/acct-a/models/sonic', { headers: { 'if-match': '"1"' } })).status).toBe(204);
    });

    it('teams and members', async () => {
      expect((await call('POST', '/admin/v1/teams', { body: { name: 'ops', description: 'operations' } })).status).toBe(201);
      expect((await call('POST', '/admin/v1/teams', { body: { name: 'ops', description: 'operations' } })).status).toBe(200);
      expectProblem(await call('POST', '/admin/v1/teams', { body: { name: 'ops', description: 'other' } }), 409, 'name');
      expectProblem(await call('POST', '/admin/v1/teams', { body: { name: 'ops2', description: 'x'.repeat(1001) } }), 400, 'description');
      expect((await call('POST', '/admin/v1/teams/ops/members', { body: { member: 'carol' } })).status).toBe(201);
      expect((await call('POST', '/admin/v1/teams/ops/members', { body: { member: 'carol' } })).status).toBe(200);
      expect((await call('POST', '/admin/v1/teams/ops/members', { body: { member: 'service:gone' } })).status).toBe(201);
      expectProblem(await call('POST', '/admin/v1/teams/ops/members', { body: { member: 'has space' } }), 400, 'member');
      expectProblem(await call('POST', '/admin/v1/teams/nope/members', { body: { member: 'x' } }), 404);
      const members = await call('GET', '/admin/v1/teams/ops/members');
      expect(members.body.items.map((m: { member: string }) => m.member)).toEqual(['carol', 'service:gone']);
      expect((await call('DELETE', `/admin/v1/teams/ops/members/${encodeURIComponent('service:gone')}`)).status).toBe(204);
      const t = await call('GET', '/admin/v1/teams/ops');
      expect(etag(t)).toBe('"1"');
      const p = await call('PATCH', '/admin/v1/teams/ops', { body: { description: 'ops people' }, headers: { 'if-match': '"1"' } });
      expect(p.status).toBe(200);
      expect(p.body.description).toBe('ops people');
      expect((await call('POST', '/admin/v1/teams', { body: { name: 'temp' } })).status).toBe(201);
      expectProblem(await call('DELETE', '/admin/v1/teams/temp'), 428);
      expect((await call('DELETE', '/admin/v1/teams/temp', { headers: { 'if-match': '"1"' } })).status).toBe(204);
      expect((await call('GET', '/admin/v1/teams')).body.items.map((x: { name: string }) => x.name)).toEqual(['ops']);
    });

    it('service accounts and keys: shown once, listed by hint, rotated with grace, revoked', async () => {
      const sa = await call('POST', '/admin/v1/service-accounts', { body: { name: 'ci', description: 'pipelines' } });
      expect(sa.status).toBe(201);
      expect(sa.body.subject).toBe('service:ci');
      expectProblem(await call('POST', '/admin/v1/service-accounts', { body: { name: 'ci', description: 'other' } }), 409, 'name');
      const k = await call('POST', '/admin/v1/service-accounts/ci/keys', { body: {} });
      expect(k.status, k.text).toBe(201);
      expect(k.body.key).toMatch(/^vg_[A-Za-z0-9_-]{43}$/);
      ciKey = k.body.key;
      expect(k.body.hint).toBe(ciKey.slice(0, 7));
      expectProblem(await call('POST', '/admin/v1/service-accounts/ci/keys', { body: { expires_at: 'tomorrow' } }), 400, 'expires_at');
      const listed = await call('GET', '/admin/v1/service-accounts/ci/keys');
      expect(listed.body.items).toHaveLength(1);
      expect(listed.text).not.toContain(ciKey);
      // The key authenticates as service:ci, a manager of acct-a.
      expect((await call('GET', '/admin/v1/accounts/acct-a', { as: ciKey })).status).toBe(200);
      const r = await call('POST', `/admin/v1/service-accounts/ci/keys/${k.body.id}/rotate`, { body: { grace_seconds: 60 } });
      expect(r.status, r.text).toBe(201);
      expect(r.body.replaces).toBe(k.body.id);
      expect(r.body.key).not.toBe(ciKey);
      expect((await call('GET', '/admin/v1/accounts/acct-a', { as: ciKey })).status).toBe(200); // within grace
      expect((await call('GET', '/admin/v1/accounts/acct-a', { as: r.body.key })).status).toBe(200);
      expect((await call('DELETE', `/admin/v1/service-accounts/ci/keys/${k.body.id}`)).status).toBe(204);
      expectProblem(await call('GET', '/admin/v1/accounts/acct-a', { as: ciKey }), 401);
      ciKey = r.body.key;
      expectProblem(await call('POST', '/admin/v1/service-accounts/ci/keys/00000000-0000-4000-8000-000000000000/rotate', { body: {} }), 404);
      const one = await call('GET', '/admin/v1/service-accounts/ci');
      const p = await call('PATCH', '/admin/v1/service-accounts/ci', { body: { description: 'CI' }, headers: { 'if-match': etag(one) } });
      expect(p.status).toBe(200);
    });

    it('authorization matrix: admin, manager of A on B, plain user, service key, no token', async () => {
      const aPath = '/admin/v1/accounts/acct-a';
      const bPath = '/admin/v1/accounts/acct-b';
      const collab = (path: string, as: string, subject: string) => call('POST', `${path}/collaborators`, { as, body: { subject, role: 'user' } });
      // The bootstrap service key is an administrator.
      expect((await call('GET', '/admin/v1/accounts', { as: bootstrapKey })).status).toBe(200);
      expect((await call('GET', '/admin/v1/service-accounts', { as: bootstrapKey })).status).toBe(200);
      for (const who of ['alice', 'carol', 'dave', ciKey]) {
        expect((await call('GET', aPath, { as: who })).status, who).toBe(200);
        expect((await call('GET', `${aPath}/collaborators`, { as: who })).status, who).toBe(200);
        expect((await call('GET', `${aPath}/models`, { as: who })).status, who).toBe(200);
        expect((await collab(aPath, who, `user:added-by-${who.slice(0, 8)}`)).status, who).toBe(201);
        // Not A's token, not A's settings, not other accounts, not global lists.
        expectProblem(await call('PUT', `${aPath}/token`, { as: who, body: { token: TOKEN_B }, headers: { 'if-match': '"3"' } }), 403);
        expectProblem(await call('PATCH', aPath, { as: who, body: { ws_per_unit: 3 }, headers: { 'if-match': '"3"' } }), 403);
        expectProblem(await call('DELETE', aPath, { as: who, headers: { 'if-match': '"3"' } }), 403);
        expectProblem(await call('GET', bPath, { as: who }), 403);
        expectProblem(await collab(bPath, who, 'user:x'), 403);
        expectProblem(await call('POST', `${bPath}/models`, { as: who, body: { model_id: 'm', type: 'tts' } }), 403);
        expectProblem(await call('GET', '/admin/v1/accounts', { as: who }), 403);
        expectProblem(await call('GET', '/admin/v1/models', { as: who }), 403);
        expectProblem(await call('POST', '/admin/v1/teams', { as: who, body: { name: 'x' } }), 403);
        expectProblem(await call('GET', '/admin/v1/audit-events', { as: who }), 403);
        expectProblem(await call('PUT', '/admin/v1/apply', { as: who, raw: '{}' }), 403);
      }
      const m = await call('POST', `${aPath}/models`, { as: 'alice', body: { model_id: 'by-alice', type: 'tts' } });
      expect(m.status).toBe(201);
      expect((await call('DELETE', `${aPath}/models/by-alice`, { as: 'alice', headers: { 'if-match': '"1"' } })).status).toBe(204);
      // A plain user (bob is a `user` collaborator of A), a stranger, a non-admin role: 403 everywhere.
      for (const who of ['bob', 'mallory', 'otherRole']) {
        expectProblem(await call('GET', aPath, { as: who }), 403);
        expectProblem(await collab(aPath, who, 'user:y'), 403);
        expectProblem(await call('GET', '/admin/v1/accounts', { as: who }), 403);
        expectProblem(await call('GET', '/admin/v1/service-accounts', { as: who }), 403);
        expectProblem(await call('GET', '/admin/v1/usage', { as: who }), 403);
      }
      // A manager asking for an account that does not exist learns nothing: 403, not 404.
      expectProblem(await call('GET', '/admin/v1/accounts/ghost', { as: 'alice' }), 403);
      expectProblem(await call('GET', aPath, { as: null }), 401);
      // Every change records its actor.
      const audit = await call('GET', '/admin/v1/audit-events?resource=collaborator&limit=500');
      const actors = new Set(audit.body.items.map((e: { actor: string }) => e.actor));
      for (const a of ['user:root', 'user:alice', 'user:carol', 'user:dave', 'service:ci']) expect(actors).toContain(a);
    });

    it('apply: dry run changes nothing; a run converges in one revision; a replay changes nothing', async () => {
      const before = await engine.store.currentRevision();
      const doc = [
        'version: 1',
        'teams:',
        '  - { name: ops, description: ops people, members: [carol, frank] }',
        'accounts:',
        '  - name: acct-a',
        '    token: env:A_TOKEN',
        '    concurrency: 4',
        '    collaborators: { users: [bob], teams: [voice], managers: { users: [alice], teams: [ops] } }',
        '  - name: acct-new',
        '    token: env:APPLY_TOKEN',
        '    collaborators: { users: [gina] }',
        'models:',
        '  - { name: lightning-v3.1, type: tts, account: acct-a, aliases: [lightning], price: { per_1k_chars: "0.06" } }',
        '  - { name: pulse, type: stt, account: acct-new, max_session_seconds: 900 }',
      ].join('\n');
      const dry = await call('PUT', '/admin/v1/apply?dry_run=true', { raw: doc, headers: { 'content-type': 'application/yaml' } });
      expect(dry.status, dry.text).toBe(200);
      expect(dry.body.dry_run).toBe(true);
      const keys = (a: Answer) => a.body.changes.map((c: { action: string; resource: string; key: string }) => `${c.action} ${c.resource} ${c.key}`);
      expect(keys(dry)).toEqual(expect.arrayContaining([
        'create team_member ops/frank',
        'delete account acct-b',
        'delete collaborator acct-a/service:ci',
        'create account acct-new',
        'create collaborator acct-new/user:gina',
        'update model acct-a/lightning-v3.1',
        'delete model acct-a/pulse',
        'create model acct-new/pulse',
      ]));
      expect(keys(dry)).not.toContain('update account_secret acct-a'); // A_TOKEN is the token acct-a has
      expect(dry.body.revision).toBe(before);
      expect(await engine.store.currentRevision()).toBe(before);
      expect(await engine.store.getAccount('acct-new')).toBeUndefined();
      expect(await engine.store.getAccount('acct-b')).toBeDefined();

      const real = await call('PUT', '/admin/v1/apply', { raw: doc, headers: { 'content-type': 'application/yaml' } });
      expect(real.status, real.text).toBe(200);
      expect(keys(real)).toEqual(keys(dry));
      expect(real.body.revision).toBe(before + 1);
      expect(await engine.store.currentRevision()).toBe(before + 1);
      expect((await engine.store.getAccount('acct-new'))?.secret.set).toBe(true);
      expect(await engine.store.getAccount('acct-b')).toBeUndefined();
      expect((await engine.store.getModel('acct-a', 'lightning-v3.1'))?.price).toEqual({ perThousandChars: '0.06' });
      expect((await engine.store.getModel('acct-new', 'pulse'))?.maxSessionSeconds).toBe(900);
      const audit = await call('GET', `/admin/v1/audit-events?limit=500`);
      expect(audit.body.items.filter((e: { revision: number }) => e.revision === before + 1).every((e: { actor: string }) => e.actor === 'user:root')).toBe(true);

      // JSON is accepted too; replaying the same document changes nothing.
      const replay = await call('PUT', '/admin/v1/apply', { body: parseYaml(doc) });
      expect(replay.status, replay.text).toBe(200);
      expect(replay.body.changes).toEqual([]);
      expect(await engine.store.currentRevision()).toBe(before + 1);
    });

    it('apply: bad documents are 400 with the path, conflicts roll everything back', async () => {
      const put = (raw: string) => call('PUT', '/admin/v1/apply', { raw, headers: { 'content-type': 'application/yaml' } });
      expectProblem(await put('accounts: [ { name: x, token: sk_inline } ]'), 400, 'accounts[0].token');
      expectProblem(await put('accounts: [ { name: x, token: env:MISSING } ]'), 400, 'accounts[0].token');
      expectProblem(await put('bogus: 1'), 400, 'bogus');
      expectProblem(await put('models: [ { name: m, type: tts, account: nowhere } ]'), 400, 'models[0].account');
      expectProblem(await put('models: [ { name: m, type: tts, account: acct-a, max_session_seconds: 0 } ]'), 400, 'models[0].max_session_seconds');
      expectProblem(await put('accounts: [ { name: x, token: env:APPLY_TOKEN, concurrency: 0 } ]'), 400, 'accounts[0].concurrency');
      expectProblem(await put('accounts: {'), 400);
      const before = await engine.store.currentRevision();
      // Two models on one account claiming one alias: the second create fails, the first is rolled back.
      const conflicting = 'models:\n  - { name: lightning-v3.1, type: tts, account: acct-a, aliases: [lightning], price: { per_1k_chars: "0.06" } }\n  - { name: extra-1, type: tts, account: acct-a, aliases: [shared] }\n  - { name: extra-2, type: tts, account: acct-a, aliases: [shared] }\n  - { name: pulse, type: stt, account: acct-new }';
      expectProblem(await put(conflicting), 409);
      expect(await engine.store.currentRevision()).toBe(before);
      expect(await engine.store.getModel('acct-a', 'extra-1')).toBeUndefined();
    });

    it('bodies over 1 MiB are 413; unknown routes 404 problem+json', async () => {
      const big = JSON.stringify({ name: 'big', description: 'x'.repeat((1 << 20) + 10) });
      expectProblem(await call('POST', '/admin/v1/teams', { raw: big, headers: { 'content-type': 'application/json' } }), 413);
      expectProblem(await call('GET', '/admin/v1/nothing'), 404);
    });

    it('usage without a roll-up source answers 503', async () => {
      expectProblem(await call('GET', '/admin/v1/usage?by=user'), 503);
      expectProblem(await call('GET', '/admin/v1/usage?by=weather'), 400, 'by');
    });

    it('database unreachable: /readyz and admin routes answer 503, /healthz 200', async () => {
      storeDown = true;
      try {
        expect((await app.request('/readyz')).status).toBe(503);
        expect((await app.request('/healthz')).status).toBe(200);
        const r = await call('GET', '/admin/v1/teams', { as: bootstrapKey });
        expectProblem(r, 503);
        expect(r.text).not.toContain('ECONNREFUSED');
      } finally {
        storeDown = false;
      }
      expect((await app.request('/readyz')).status).toBe(200);
    });

    it('deleting an account needs If-Match and takes its collaborators and models', async () => {
      const a = await call('GET', '/admin/v1/accounts/acct-new');
      expectProblem(await call('DELETE', '/admin/v1/accounts/acct-new'), 428);
      expectProblem(await call('DELETE', '/admin/v1/accounts/acct-new', { headers: { 'if-match': '"99"' } }), 412);
      expect((await call('DELETE', '/admin/v1/accounts/acct-new', { headers: { 'if-match': etag(a) } })).status).toBe(204);
      expect(await engine.store.getModel('acct-new', 'pulse')).toBeUndefined();
    });

    it("a write whose configuration cannot become the pods' snapshot is 422 problem+json naming the cause, with nothing committed", async () => {
      // acct-a serves lightning-v3.1 (alias `lightning`) for provider smallest; acct-c joins that provider.
      const created = await call('POST', '/admin/v1/accounts', { body: { name: 'acct-c', token: TOKEN_B } });
      expect(created.status, created.text).toBe(201);
      const unchanged = async (revision: number) => {
        expect(await engine.store.currentRevision()).toBe(revision);
        const audit = await call('GET', '/admin/v1/audit-events?limit=500');
        expect(audit.body.items.some((e: { revision: number }) => e.revision > revision)).toBe(false);
      };

      // A second model of the provider answering to the same alias: which one a request meant would depend on order.
      let before = await engine.store.currentRevision();
      const clash = await call('POST', '/admin/v1/accounts/acct-c/models', { body: { model_id: 'other-tts', type: 'tts', aliases: ['lightning'] } });
      expectProblem(clash, 422);
      expect(clash.body.type).toBe('urn:voicegate:problem:configuration_rejected');
      expect(clash.body.detail).toContain('model acct-c/other-tts');
      expect(clash.body.detail).toContain('"lightning" is already used by "lightning-v3.1"');
      expect(await engine.store.getModel('acct-c', 'other-tts')).toBeUndefined();
      await unchanged(before);

      // One model name typed tts on acct-a and stt here.
      const typed = await call('POST', '/admin/v1/accounts/acct-c/models', { body: { model_id: 'lightning-v3.1', type: 'stt' } });
      expectProblem(typed, 422);
      expect(typed.body.detail).toContain('every entry of one model has the same type');
      await unchanged(before);

      // The same model served by two accounts is fine; so is a model of its own.
      expect((await call('POST', '/admin/v1/accounts/acct-c/models', { body: { model_id: 'lightning-v3.1', type: 'tts' } })).status).toBe(201);
      const solo = await call('POST', '/admin/v1/accounts/acct-c/models', { body: { model_id: 'solo', type: 'tts' } });
      expect(solo.status, solo.text).toBe(201);

      // A PATCH that makes the clash: refused, the model keeps its version.
      before = await engine.store.currentRevision();
      const patched = await call('PATCH', '/admin/v1/accounts/acct-c/models/solo', { body: { aliases: ['lightning'] }, headers: { 'if-match': etag(solo) } });
      expectProblem(patched, 422);
      expect(patched.body.detail).toContain('model acct-c/solo');
      expect((await engine.store.getModel('acct-c', 'solo'))?.aliases).toEqual([]);
      await unchanged(before);

      // apply, dry run or not: the same refusal, nothing applied.
      const doc = 'models:\n  - { name: lightning-v3.1, type: tts, account: acct-a, aliases: [lightning], price: { per_1k_chars: "0.06" } }\n  - { name: solo, type: tts, account: acct-c, aliases: [lightning] }';
      for (const q of ['?dry_run=true', '']) {
        const applied = await call('PUT', `/admin/v1/apply${q}`, { raw: doc, headers: { 'content-type': 'application/yaml' } });
        expectProblem(applied, 422);
        expect(applied.body.detail).toContain('model acct-c/solo');
      }
      expect(await engine.store.getModel('acct-c', 'lightning-v3.1')).toBeDefined();
      await unchanged(before);

      const c = await call('GET', '/admin/v1/accounts/acct-c');
      expect((await call('DELETE', '/admin/v1/accounts/acct-c', { headers: { 'if-match': etag(c) } })).status).toBe(204);
    });

    it('no provider token in any answer or audit row', async () => {
      const audit: unknown[] = [];
      let cursor: string | null = null;
      do {
        const p = await engine.store.listAuditEvents({}, { limit: 500, cursor });
        audit.push(...p.items);
        cursor = p.nextCursor;
      } while (cursor);
      expect(audit.length).toBeGreaterThan(20);
      const haystack = seen.join('\n') + JSON.stringify(audit);
      for (const s of SECRETS) expect(haystack).not.toContain(s);
      expect(seen.length).toBeGreaterThan(100);
    });
  });
}
