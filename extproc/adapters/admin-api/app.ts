/**
 * The control plane's admin HTTP API (`/admin/v1/…`) as one Hono app with typed, validated routes
 * (@hono/zod-openapi) and its OpenAPI 3.1 document at `/admin/v1/openapi.json`. Transport-free:
 * tests call `app.request(…)`; `voicegate control` serves `app.fetch` with @hono/node-server.
 *
 * @example
 * const app = createAdminApp({ store, verifier: new IdentityVerifier(snapshot.issuers) });
 * const res = await app.request('/admin/v1/accounts', { headers: { authorization: `Bearer ${jwt}` } });
 */
import { createRoute, OpenAPIHono, z, type RouteConfig } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { resourceName } from '../../core/control/schemas.ts';
import type { ControlStore, ResourceKind } from '../../core/control/store.ts';
import { applyConfiguration, parseApplyDocument, type ResolveSecret } from './apply.ts';
import { authenticate, forbidden, managesAccount, type Principal, type TokenVerifier } from './auth.ts';
import { BOOTSTRAP_SUBJECT } from './bootstrap.ts';
import { assertCompiles, type ConfigurationCheck } from './data-plane-check.ts';
import { fail, problem, ProblemError, storeProblem, zodProblem, type Problem } from './problem.ts';
import * as W from './wire.ts';

export const USAGE_BY = ['user', 'team', 'model', 'account'] as const;
export interface UsageRollup {
  readonly key: string;
  readonly requests: number;
  readonly errors: number;
  readonly characters: number;
  readonly audioSeconds: string;
  readonly costUsd: string;
}
/** The roll-ups of days `from`..`to` (YYYY-MM-DD, UTC, inclusive); supplied by the composition root. */
export type UsageQuery = (q: { readonly by: (typeof USAGE_BY)[number]; readonly from: string; readonly to: string }) => Promise<readonly UsageRollup[]>;

export const DEFAULT_ADMIN_ROLE = 'voicegate-admin';
export const DEFAULT_ADMIN_SUBJECTS: readonly string[] = [BOOTSTRAP_SUBJECT];
export const MAX_BODY_BYTES = 1 << 20;

export interface AdminEnv {
  Variables: { principal: Principal };
}
export type AdminApp = OpenAPIHono<AdminEnv>;

export interface AdminAppDeps {
  readonly store: ControlStore;
  /** Verifies JWTs against the configuration's issuers (core/identity IdentityVerifier). */
  readonly verifier: TokenVerifier;
  /** Roles-claim value that makes a JWT caller an administrator. */
  readonly adminRole?: string;
  /** Subjects that are administrators whatever their token says (`service:bootstrap-admin`). */
  readonly adminSubjects?: readonly string[];
  /** Usage roll-ups; absent, `GET /usage` answers 503. */
  readonly usage?: UsageQuery | undefined;
  /** Resolves `env:`/`file:` token references of `PUT /apply` documents. */
  readonly resolveSecret?: ResolveSecret | undefined;
  /** Whether the database answers; false turns /readyz and failing admin calls into 503. */
  readonly ready?: () => Promise<boolean>;
  /**
   * Judges the configuration a write to accounts, collaborators, models or `PUT /apply` leaves
   * (data-plane-check.ts `dataPlaneCheck`): one that cannot become the pods' snapshot is refused
   * with 422 inside the write's transaction, so nothing commits. Absent, writes are not judged.
   */
  readonly checkConfiguration?: ConfigurationCheck | undefined;
  /** Adds routes after authentication is in place (the lead's `GET /admin/v1/snapshot`). */
  readonly mount?: (app: AdminApp) => void;
  readonly maxBodyBytes?: number;
}

const PROBLEM = 'application/problem+json';

function send(_c: Context, p: Problem, headers: Readonly<Record<string, string>> = {}): Response {
  return new Response(JSON.stringify(p), { status: p.status, headers: { 'content-type': PROBLEM, ...headers } });
}

// ── shared route pieces ─────────────────────────────────────────────────────────────────────
const problemContent = { content: { [PROBLEM]: { schema: W.ProblemView } } };
const errors = {
  400: { description: 'invalid input; `field` names it', ...problemContent },
  401: { description: 'no or bad credential', ...problemContent },
  403: { description: 'not allowed', ...problemContent },
  404: { description: 'no such resource', ...problemContent },
  409: { description: 'exists with other content, or wrong state', ...problemContent },
  412: { description: 'stale If-Match', ...problemContent },
  422: { description: "the resulting configuration cannot become the pods' snapshot; nothing was changed", ...problemContent },
  428: { description: 'If-Match missing', ...problemContent },
  503: { description: 'database unavailable', ...problemContent },
} as const;
const etag = { ETag: { schema: { type: 'string' as const }, description: '"<version>"' } };
const json = <S extends z.ZodType>(schema: S, description: string) => ({ description, content: { 'application/json': { schema } }, headers: etag });
const body = <S extends z.ZodType>(schema: S, required = true) => ({ body: { required, content: { 'application/json': { schema } } } });
const ifMatchHeader = z.object({ 'if-match': z.string().optional().openapi({ description: '"<version>" from the ETag' }) });
const page = z.object({
  limit: z.coerce.number().int().min(1).max(500).optional().openapi({ description: '1–500, default 100' }),
  cursor: z.string().max(2048).optional(),
});
const P = {
  account: z.object({ account: resourceName }),
  collaborator: z.object({ account: resourceName, subject: z.string().min(1).max(220) }),
  model: z.object({ account: resourceName, model_id: resourceName }),
  team: z.object({ team: resourceName }),
  member: z.object({ team: resourceName, member: z.string().min(1).max(200) }),
  sa: z.object({ name: resourceName }),
  key: z.object({ name: resourceName, id: z.string().min(1).max(64) }),
};

function route<R extends Omit<RouteConfig, 'responses'> & { responses: RouteConfig['responses'] }>(r: R) {
  return createRoute({ security: [{ bearer: [] }], ...r, responses: { ...errors, ...r.responses } } as R & { responses: R['responses'] & typeof errors });
}

/** The version an `If-Match` names: 428 when absent, 400 when not `"<n>"`. */
function ifMatch(c: Context): number {
  const h = c.req.header('if-match');
  if (h === undefined) fail(428, 'precondition_required', 'send If-Match: "<version>" (the ETag you read)', 'If-Match');
  const m = /^\s*(?:W\/)?"(\d{1,15})"\s*$/.exec(h);
  if (!m) fail(400, 'invalid_if_match', 'If-Match must be "<version>" as the ETag carries it', 'If-Match');
  return Number(m[1]);
}

function tagged(c: Context, version: number): void {
  c.header('ETag', `"${version}"`);
}

function pageOf(q: { limit?: number | undefined; cursor?: string | undefined }) {
  return { ...(q.limit !== undefined ? { limit: q.limit } : {}), cursor: q.cursor ?? null };
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export function createAdminApp(deps: AdminAppDeps): AdminApp {
  const { store } = deps;
  const auth = {
    store,
    verifier: deps.verifier,
    adminRole: deps.adminRole ?? DEFAULT_ADMIN_ROLE,
    adminSubjects: deps.adminSubjects ?? DEFAULT_ADMIN_SUBJECTS,
  };
  const app: AdminApp = new OpenAPIHono<AdminEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return send(c, zodProblem(result.error, result.target === 'header' ? '' : ''));
      return undefined;
    },
  });
  const ready = async () => (deps.ready ? deps.ready().catch(() => false) : true);

  app.onError(async (err, c) => {
    if (err instanceof ProblemError) return send(c, err.problem, err.headers);
    const known = storeProblem(err);
    if (known) return send(c, known);
    if (err instanceof HTTPException) {
      const status = err.status;
      return send(c, problem(status, status === 415 ? 'unsupported_media_type' : status === 413 ? 'body_too_large' : 'bad_request', status === 400 ? 'the body is not valid JSON' : err.message));
    }
    // Never the error's text: a driver message can quote parameters.
    if (!(await ready())) return send(c, problem(503, 'store_unavailable', 'the control-plane database is unreachable; try again shortly'), { 'retry-after': '5' });
    return send(c, problem(500, 'internal', 'internal error'));
  });
  app.notFound((c) => send(c, problem(404, 'no_route', `no route ${c.req.method} ${new URL(c.req.url).pathname}`)));

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => ((await ready()) ? c.json({ ready: true }) : c.json({ ready: false }, 503)));

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', description: 'a JWT of a configured issuer, or a vg_ service key' });
  app.doc31('/admin/v1/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'voicegate admin API', version: '1', description: 'Accounts, collaborators, models, teams, service accounts, audit events, usage, apply.' },
  });

  const maxSize = deps.maxBodyBytes ?? MAX_BODY_BYTES;
  app.use('/admin/v1/*', bodyLimit({ maxSize, onError: (c) => send(c, problem(413, 'body_too_large', `bodies are limited to ${maxSize} bytes`)) }));
  app.use('/admin/v1/*', async (c, next) => {
    if (c.req.path === '/admin/v1/openapi.json') return next();
    c.set('principal', await authenticate(c.req.header('authorization'), auth));
    return next();
  });

  const who = (c: Context<AdminEnv>) => c.get('principal');
  const actor = (c: Context<AdminEnv>) => ({ actor: who(c).subject });
  const admin = (c: Context<AdminEnv>) => {
    if (!who(c).admin) forbidden();
  };
  /** Administrators, or managers of `account`: its reading and its collaborators and models. */
  const manager = async (c: Context<AdminEnv>, account: string) => {
    if (who(c).admin) return;
    if (!(await managesAccount(store, who(c), account))) forbidden(`this needs an administrator or a manager of account "${account}"`);
  };
  /**
   * A change to what the pods' snapshot holds: in one transaction with the configuration check,
   * so a change that would not compile is refused (422) and rolled back. Removals are not routed
   * here: taking something away cannot make a configuration stop compiling.
   */
  const write = async <T>(c: Context<AdminEnv>, change: (s: ControlStore) => Promise<T>): Promise<T> => {
    const check = deps.checkConfiguration;
    if (!check) return change(store);
    return store.atomically(actor(c), async (tx) => {
      const before = await tx.currentRevision();
      const value = await change(tx);
      await assertCompiles(tx, before, check);
      return value;
    });
  };
  const must = <T>(v: T | undefined, kind: ResourceKind, key: string): T => {
    if (v === undefined) fail(404, 'not_found', `${kind} ${JSON.stringify(key)} does not exist`);
    return v;
  };

  // ── accounts ──────────────────────────────────────────────────────────────────────────────
  const accountsPath = '/admin/v1/accounts';
  app.openapi(route({ method: 'get', path: accountsPath, tags: ['accounts'], request: { query: page }, responses: { 200: json(W.listOf(W.AccountView, 'AccountList'), 'accounts') } }), async (c) => {
    admin(c);
    const p = await store.listAccounts(pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.account), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: accountsPath, tags: ['accounts'], request: body(W.NewAccountBody), responses: { 200: json(W.AccountView, 'identical account existed'), 201: json(W.AccountView, 'created') } }),
    async (c) => {
      admin(c);
      const b = c.req.valid('json');
      const r = await write(c, (s) => s.createAccount(
        {
          name: b.name,
          ...(b.provider !== undefined ? { provider: b.provider } : {}),
          ...(b.base_url !== undefined ? { baseUrl: b.base_url } : {}),
          ...(b.concurrency_units !== undefined ? { concurrencyUnits: b.concurrency_units } : {}),
          ...(b.ws_per_unit !== undefined ? { wsPerUnit: b.ws_per_unit } : {}),
          ...(b.token !== undefined ? { token: b.token } : {}),
        },
        actor(c),
      ));
      tagged(c, r.value.version);
      return r.created ? c.json(W.view.account(r.value), 201) : c.json(W.view.account(r.value), 200);
    },
  );
  const accountPath = '/admin/v1/accounts/{account}';
  app.openapi(route({ method: 'get', path: accountPath, tags: ['accounts'], request: { params: P.account }, responses: { 200: json(W.AccountView, 'account') } }), async (c) => {
    const { account } = c.req.valid('param');
    await manager(c, account);
    const a = must(await store.getAccount(account), 'account', account);
    tagged(c, a.version);
    return c.json(W.view.account(a), 200);
  });
  app.openapi(
    route({ method: 'patch', path: accountPath, tags: ['accounts'], request: { params: P.account, headers: ifMatchHeader, ...body(W.AccountPatchBody) }, responses: { 200: json(W.AccountView, 'account') } }),
    async (c) => {
      admin(c);
      const { account } = c.req.valid('param');
      const b = c.req.valid('json');
      const version = ifMatch(c);
      const a = await write(c, (s) => s.updateAccount(
        account,
        {
          ...(b.base_url !== undefined ? { baseUrl: b.base_url } : {}),
          ...(b.concurrency_units !== undefined ? { concurrencyUnits: b.concurrency_units } : {}),
          ...(b.ws_per_unit !== undefined ? { wsPerUnit: b.ws_per_unit } : {}),
        },
        version,
        actor(c),
      ));
      tagged(c, a.version);
      return c.json(W.view.account(a), 200);
    },
  );
  app.openapi(
    route({ method: 'delete', path: accountPath, tags: ['accounts'], request: { params: P.account, headers: ifMatchHeader }, responses: { 204: { description: 'deleted, with its collaborators and models' } } }),
    async (c) => {
      admin(c);
      const { account } = c.req.valid('param');
      const version = ifMatch(c);
      await store.deleteAccount(account, actor(c), version);
      return c.body(null, 204);
    },
  );
  app.openapi(
    route({ method: 'put', path: `${accountPath}/token`, tags: ['accounts'], request: { params: P.account, headers: ifMatchHeader, ...body(W.TokenBody) }, responses: { 200: json(W.AccountView, 'account with its new secret view') } }),
    async (c) => {
      admin(c);
      const { account } = c.req.valid('param');
      const { token } = c.req.valid('json');
      const version = ifMatch(c);
      const a = await write(c, (s) => s.setAccountSecret(account, token, actor(c), version));
      tagged(c, a.version);
      return c.json(W.view.account(a), 200);
    },
  );

  // ── collaborators ─────────────────────────────────────────────────────────────────────────
  const collabsPath = `${accountPath}/collaborators`;
  app.openapi(route({ method: 'get', path: collabsPath, tags: ['collaborators'], request: { params: P.account, query: page }, responses: { 200: json(W.listOf(W.CollaboratorView, 'CollaboratorList'), 'collaborators') } }), async (c) => {
    const { account } = c.req.valid('param');
    await manager(c, account);
    const p = await store.listCollaborators(account, pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.collaborator), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: collabsPath, tags: ['collaborators'], request: { params: P.account, ...body(W.NewCollaboratorBody) }, responses: { 200: json(W.CollaboratorView, 'identical entry existed'), 201: json(W.CollaboratorView, 'created') } }),
    async (c) => {
      const { account } = c.req.valid('param');
      await manager(c, account);
      const b = c.req.valid('json');
      const r = await write(c, (s) => s.addCollaborator(account, { subject: b.subject as `user:${string}`, role: b.role }, actor(c)));
      tagged(c, r.value.version);
      return r.created ? c.json(W.view.collaborator(r.value), 201) : c.json(W.view.collaborator(r.value), 200);
    },
  );
  const collabPath = `${collabsPath}/{subject}`;
  app.openapi(route({ method: 'get', path: collabPath, tags: ['collaborators'], request: { params: P.collaborator }, responses: { 200: json(W.CollaboratorView, 'collaborator') } }), async (c) => {
    const { account, subject } = c.req.valid('param');
    await manager(c, account);
    const v = must(await store.getCollaborator(account, subject), 'collaborator', `${account}/${subject}`);
    tagged(c, v.version);
    return c.json(W.view.collaborator(v), 200);
  });
  app.openapi(
    route({ method: 'patch', path: collabPath, tags: ['collaborators'], request: { params: P.collaborator, headers: ifMatchHeader, ...body(W.CollaboratorPatchBody) }, responses: { 200: json(W.CollaboratorView, 'collaborator') } }),
    async (c) => {
      const { account, subject } = c.req.valid('param');
      await manager(c, account);
      const version = ifMatch(c);
      const v = await write(c, (s) => s.updateCollaborator(account, subject, c.req.valid('json'), version, actor(c)));
      tagged(c, v.version);
      return c.json(W.view.collaborator(v), 200);
    },
  );
  app.openapi(route({ method: 'delete', path: collabPath, tags: ['collaborators'], request: { params: P.collaborator, headers: ifMatchHeader }, responses: { 204: { description: 'removed' } } }), async (c) => {
    const { account, subject } = c.req.valid('param');
    await manager(c, account);
    await store.removeCollaborator(account, subject, actor(c), ifMatch(c));
    return c.body(null, 204);
  });

  // ── models ────────────────────────────────────────────────────────────────────────────────
  app.openapi(
    route({ method: 'get', path: '/admin/v1/models', tags: ['models'], request: { query: page.extend({ model_id: resourceName.optional() }) }, responses: { 200: json(W.listOf(W.ModelView, 'ModelList'), 'models of every account') } }),
    async (c) => {
      admin(c);
      const q = c.req.valid('query');
      const p = await store.listModels(q.model_id !== undefined ? { modelId: q.model_id } : {}, pageOf(q));
      return c.json({ items: p.items.map(W.view.model), next_cursor: p.nextCursor }, 200);
    },
  );
  const modelsPath = `${accountPath}/models`;
  app.openapi(route({ method: 'get', path: modelsPath, tags: ['models'], request: { params: P.account, query: page }, responses: { 200: json(W.listOf(W.ModelView, 'AccountModelList'), 'models of the account') } }), async (c) => {
    const { account } = c.req.valid('param');
    await manager(c, account);
    must(await store.getAccount(account), 'account', account);
    const p = await store.listModels({ account }, pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.model), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: modelsPath, tags: ['models'], request: { params: P.account, ...body(W.NewModelBody) }, responses: { 200: json(W.ModelView, 'identical model existed'), 201: json(W.ModelView, 'created') } }),
    async (c) => {
      const { account } = c.req.valid('param');
      await manager(c, account);
      const b = c.req.valid('json');
      const r = await write(c, (s) => s.createModel(
        account,
        {
          modelId: b.model_id,
          type: b.type,
          ...(b.aliases !== undefined ? { aliases: b.aliases } : {}),
          ...(b.price !== undefined ? { price: W.priceOf(b.price) } : {}),
          ...(b.max_session_seconds !== undefined ? { maxSessionSeconds: b.max_session_seconds } : {}),
        },
        actor(c),
      ));
      tagged(c, r.value.version);
      return r.created ? c.json(W.view.model(r.value), 201) : c.json(W.view.model(r.value), 200);
    },
  );
  const modelPath = `${modelsPath}/{model_id}`;
  app.openapi(route({ method: 'get', path: modelPath, tags: ['models'], request: { params: P.model }, responses: { 200: json(W.ModelView, 'model') } }), async (c) => {
    const { account, model_id } = c.req.valid('param');
    await manager(c, account);
    const m = must(await store.getModel(account, model_id), 'model', `${account}/${model_id}`);
    tagged(c, m.version);
    return c.json(W.view.model(m), 200);
  });
  app.openapi(
    route({ method: 'patch', path: modelPath, tags: ['models'], request: { params: P.model, headers: ifMatchHeader, ...body(W.ModelPatchBody) }, responses: { 200: json(W.ModelView, 'model') } }),
    async (c) => {
      const { account, model_id } = c.req.valid('param');
      await manager(c, account);
      const b = c.req.valid('json');
      const version = ifMatch(c);
      const m = await write(c, (s) => s.updateModel(
        account,
        model_id,
        {
          ...(b.aliases !== undefined ? { aliases: b.aliases } : {}),
          ...(b.price !== undefined ? { price: W.priceOf(b.price) } : {}),
          ...(b.max_session_seconds !== undefined ? { maxSessionSeconds: b.max_session_seconds } : {}),
        },
        version,
        actor(c),
      ));
      tagged(c, m.version);
      return c.json(W.view.model(m), 200);
    },
  );
  app.openapi(route({ method: 'delete', path: modelPath, tags: ['models'], request: { params: P.model, headers: ifMatchHeader }, responses: { 204: { description: 'deleted' } } }), async (c) => {
    const { account, model_id } = c.req.valid('param');
    await manager(c, account);
    await store.deleteModel(account, model_id, actor(c), ifMatch(c));
    return c.body(null, 204);
  });

  // ── teams ─────────────────────────────────────────────────────────────────────────────────
  app.openapi(route({ method: 'get', path: '/admin/v1/teams', tags: ['teams'], request: { query: page }, responses: { 200: json(W.listOf(W.TeamView, 'TeamList'), 'teams') } }), async (c) => {
    admin(c);
    const p = await store.listTeams(pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.team), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: '/admin/v1/teams', tags: ['teams'], request: body(W.NewTeamBody), responses: { 200: json(W.TeamView, 'identical team existed'), 201: json(W.TeamView, 'created') } }),
    async (c) => {
      admin(c);
      const b = c.req.valid('json');
      const r = await store.createTeam({ name: b.name, ...(b.description !== undefined ? { description: b.description } : {}) }, actor(c));
      tagged(c, r.value.version);
      return r.created ? c.json(W.view.team(r.value), 201) : c.json(W.view.team(r.value), 200);
    },
  );
  const teamPath = '/admin/v1/teams/{team}';
  app.openapi(route({ method: 'get', path: teamPath, tags: ['teams'], request: { params: P.team }, responses: { 200: json(W.TeamView, 'team') } }), async (c) => {
    admin(c);
    const { team } = c.req.valid('param');
    const t = must(await store.getTeam(team), 'team', team);
    tagged(c, t.version);
    return c.json(W.view.team(t), 200);
  });
  app.openapi(
    route({ method: 'patch', path: teamPath, tags: ['teams'], request: { params: P.team, headers: ifMatchHeader, ...body(W.DescriptionPatchBody) }, responses: { 200: json(W.TeamView, 'team') } }),
    async (c) => {
      admin(c);
      const { team } = c.req.valid('param');
      const t = await store.updateTeam(team, c.req.valid('json'), ifMatch(c), actor(c));
      tagged(c, t.version);
      return c.json(W.view.team(t), 200);
    },
  );
  app.openapi(route({ method: 'delete', path: teamPath, tags: ['teams'], request: { params: P.team, headers: ifMatchHeader }, responses: { 204: { description: 'deleted, with its members' } } }), async (c) => {
    admin(c);
    const { team } = c.req.valid('param');
    await store.deleteTeam(team, actor(c), ifMatch(c));
    return c.body(null, 204);
  });
  app.openapi(route({ method: 'get', path: `${teamPath}/members`, tags: ['teams'], request: { params: P.team, query: page }, responses: { 200: json(W.listOf(W.MemberView, 'MemberList'), 'members') } }), async (c) => {
    admin(c);
    const { team } = c.req.valid('param');
    must(await store.getTeam(team), 'team', team);
    const p = await store.listTeamMembers(team, pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.member), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: `${teamPath}/members`, tags: ['teams'], request: { params: P.team, ...body(W.NewMemberBody) }, responses: { 200: { description: 'already a member', content: { 'application/json': { schema: W.MemberView } } }, 201: { description: 'added', content: { 'application/json': { schema: W.MemberView } } } } }),
    async (c) => {
      admin(c);
      const { team } = c.req.valid('param');
      const r = await store.addTeamMember(team, c.req.valid('json').member, actor(c));
      return r.created ? c.json(W.view.member(r.value), 201) : c.json(W.view.member(r.value), 200);
    },
  );
  app.openapi(route({ method: 'delete', path: `${teamPath}/members/{member}`, tags: ['teams'], request: { params: P.member }, responses: { 204: { description: 'removed' } } }), async (c) => {
    admin(c);
    const { team, member } = c.req.valid('param');
    await store.removeTeamMember(team, member, actor(c));
    return c.body(null, 204);
  });

  // ── service accounts and keys ─────────────────────────────────────────────────────────────
  const sasPath = '/admin/v1/service-accounts';
  app.openapi(route({ method: 'get', path: sasPath, tags: ['service accounts'], request: { query: page }, responses: { 200: json(W.listOf(W.ServiceAccountView, 'ServiceAccountList'), 'service accounts') } }), async (c) => {
    admin(c);
    const p = await store.listServiceAccounts(pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.serviceAccount), next_cursor: p.nextCursor }, 200);
  });
  app.openapi(
    route({ method: 'post', path: sasPath, tags: ['service accounts'], request: body(W.NewServiceAccountBody), responses: { 200: json(W.ServiceAccountView, 'identical existed'), 201: json(W.ServiceAccountView, 'created') } }),
    async (c) => {
      admin(c);
      const b = c.req.valid('json');
      const r = await store.createServiceAccount({ name: b.name, ...(b.description !== undefined ? { description: b.description } : {}) }, actor(c));
      tagged(c, r.value.version);
      return r.created ? c.json(W.view.serviceAccount(r.value), 201) : c.json(W.view.serviceAccount(r.value), 200);
    },
  );
  const saPath = `${sasPath}/{name}`;
  app.openapi(route({ method: 'get', path: saPath, tags: ['service accounts'], request: { params: P.sa }, responses: { 200: json(W.ServiceAccountView, 'service account') } }), async (c) => {
    admin(c);
    const { name: n } = c.req.valid('param');
    const s = must(await store.getServiceAccount(n), 'service_account', n);
    tagged(c, s.version);
    return c.json(W.view.serviceAccount(s), 200);
  });
  app.openapi(
    route({ method: 'patch', path: saPath, tags: ['service accounts'], request: { params: P.sa, headers: ifMatchHeader, ...body(W.DescriptionPatchBody) }, responses: { 200: json(W.ServiceAccountView, 'service account') } }),
    async (c) => {
      admin(c);
      const { name: n } = c.req.valid('param');
      const s = await store.updateServiceAccount(n, c.req.valid('json'), ifMatch(c), actor(c));
      tagged(c, s.version);
      return c.json(W.view.serviceAccount(s), 200);
    },
  );
  app.openapi(route({ method: 'delete', path: saPath, tags: ['service accounts'], request: { params: P.sa, headers: ifMatchHeader }, responses: { 204: { description: 'deleted, with its keys, collaborator entries and memberships' } } }), async (c) => {
    admin(c);
    const { name: n } = c.req.valid('param');
    await store.deleteServiceAccount(n, actor(c), ifMatch(c));
    return c.body(null, 204);
  });
  app.openapi(route({ method: 'get', path: `${saPath}/keys`, tags: ['service accounts'], request: { params: P.sa, query: page }, responses: { 200: json(W.listOf(W.ServiceKeyView, 'ServiceKeyList'), 'keys (never the key itself)') } }), async (c) => {
    admin(c);
    const { name: n } = c.req.valid('param');
    must(await store.getServiceAccount(n), 'service_account', n);
    const p = await store.listServiceKeys(n, pageOf(c.req.valid('query')));
    return c.json({ items: p.items.map(W.view.serviceKey), next_cursor: p.nextCursor }, 200);
  });
  const issued = { description: 'minted: the only answer that shows the key', content: { 'application/json': { schema: W.IssuedKeyView } } };
  app.openapi(route({ method: 'post', path: `${saPath}/keys`, tags: ['service accounts'], request: { params: P.sa, ...body(W.NewKeyBody, false) }, responses: { 201: issued } }), async (c) => {
    admin(c);
    const { name: n } = c.req.valid('param');
    const b = c.req.valid('json');
    const k = await store.createServiceKey(n, { ...(b.expires_at !== undefined ? { expiresAt: b.expires_at } : {}) }, actor(c));
    c.header('cache-control', 'no-store');
    return c.json({ key: k.plaintext, ...W.view.serviceKey(k.key) }, 201);
  });
  app.openapi(route({ method: 'post', path: `${saPath}/keys/{id}/rotate`, tags: ['service accounts'], request: { params: P.key, ...body(W.RotateKeyBody, false) }, responses: { 201: issued } }), async (c) => {
    admin(c);
    const { name: n, id } = c.req.valid('param');
    const b = c.req.valid('json');
    const k = await store.rotateServiceKey(n, id, { graceSeconds: b.grace_seconds ?? 3600, ...(b.expires_at !== undefined ? { expiresAt: b.expires_at } : {}) }, actor(c));
    c.header('cache-control', 'no-store');
    return c.json({ key: k.plaintext, ...W.view.serviceKey(k.key), replaces: id }, 201);
  });
  app.openapi(route({ method: 'delete', path: `${saPath}/keys/{id}`, tags: ['service accounts'], request: { params: P.key }, responses: { 204: { description: 'revoked' } } }), async (c) => {
    admin(c);
    const { name: n, id } = c.req.valid('param');
    await store.revokeServiceKey(n, id, actor(c));
    return c.body(null, 204);
  });

  // ── audit, usage, apply ───────────────────────────────────────────────────────────────────
  const resourceKinds = ['account', 'account_secret', 'collaborator', 'model', 'team', 'team_member', 'service_account', 'service_key'] as const;
  app.openapi(
    route({ method: 'get', path: '/admin/v1/audit-events', tags: ['audit'], request: { query: page.extend({ resource: z.enum(resourceKinds).optional(), key: z.string().max(500).optional() }) }, responses: { 200: json(W.listOf(W.AuditView, 'AuditList'), 'newest first') } }),
    async (c) => {
      admin(c);
      const q = c.req.valid('query');
      const p = await store.listAuditEvents({ ...(q.resource ? { resource: q.resource } : {}), ...(q.key ? { resourceKey: q.key } : {}) }, pageOf(q));
      return c.json({ items: p.items.map(W.view.audit), next_cursor: p.nextCursor }, 200);
    },
  );
  app.openapi(
    route({
      method: 'get',
      path: '/admin/v1/usage',
      tags: ['usage'],
      request: { query: z.object({ by: z.enum(USAGE_BY).default('user'), from: z.string().regex(DAY, 'must be YYYY-MM-DD').optional(), to: z.string().regex(DAY, 'must be YYYY-MM-DD').optional() }) },
      responses: { 200: json(z.object({ by: z.string(), from: z.string(), to: z.string(), rows: z.array(W.UsageRowView) }).openapi('Usage'), 'roll-ups, costliest first') },
    }),
    async (c) => {
      admin(c);
      if (!deps.usage) fail(503, 'usage_unavailable', 'usage roll-ups need PostgreSQL (DATABASE_URL) and the aggregator');
      const q = c.req.valid('query');
      const to = q.to ?? new Date().toISOString().slice(0, 10);
      const from = q.from ?? new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10);
      if (from > to) fail(400, 'invalid_input', 'from: must not be after to', 'from');
      const rows = await deps.usage({ by: q.by, from, to });
      return c.json({
        by: q.by,
        from,
        to,
        rows: rows.map((r) => ({ key: r.key, requests: r.requests, errors: r.errors, characters: r.characters, audio_seconds: r.audioSeconds, cost: r.costUsd })),
      }, 200);
    },
  );
  app.openapi(
    route({
      method: 'put',
      path: '/admin/v1/apply',
      tags: ['apply'],
      request: {
        query: z.object({ dry_run: z.enum(['true', 'false']).optional() }),
        body: { required: true, description: 'the configuration document (YAML or JSON): `accounts`, `models`, `teams`', content: { 'application/yaml': { schema: { type: 'string' } }, 'application/json': { schema: { type: 'object' } } } },
      },
      responses: { 200: { description: 'what changed (or would, on a dry run)', content: { 'application/json': { schema: W.ApplyResultView } } } },
    }),
    async (c) => {
      admin(c);
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== '' && !['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'].includes(type)) {
        fail(415, 'unsupported_media_type', 'send the document as application/yaml or application/json');
      }
      const doc = parseApplyDocument(await c.req.text());
      const result = await applyConfiguration(store, doc, { actor: who(c).subject, dryRun: c.req.valid('query').dry_run === 'true', resolveSecret: deps.resolveSecret, check: deps.checkConfiguration });
      return c.json({ revision: result.revision, dry_run: result.dry_run, changes: [...result.changes] }, 200);
    },
  );

  deps.mount?.(app);
  return app;
}
