/**
 * `PUT /admin/v1/apply`: converges the store to a configuration document — the YAML file's
 * `accounts` and `models`, plus an optional `teams` section — inside one store transaction, so the
 * whole document lands as one revision or not at all. A dry run makes the same calls and rolls
 * them back, so it reports exactly what a real run would change (conflicts included).
 *
 * A section that is absent is left alone; a present one (even empty) is authoritative: what it
 * does not list is deleted. Fields the document cannot express (an account's `base_url`) are kept.
 * Tokens are `env:`/`file:` references, resolved here, by the control plane; a token whose
 * fingerprint matches the stored one is not rewritten.
 */
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { describeSecret } from '../../core/control/envelope.ts';
import { allPages as all } from '../../core/control/cursor.ts';
import { formatPath } from '../../core/config/errors.ts';
import { configDocument } from '../../core/config/schema.ts';
import type { SecretResult } from '../../core/config/compile.ts';
import type { CollaboratorRole, ControlStore, Model, Price, Subject } from '../../core/control/store.ts';
import { assertCompiles, type ConfigurationCheck } from './data-plane-check.ts';
import { fail, problem, ProblemError } from './problem.ts';

export type ResolveSecret = (ref: string) => Promise<SecretResult>;

export interface ApplyChange {
  readonly action: 'create' | 'update' | 'delete';
  readonly resource: string;
  readonly key: string;
}

export interface ApplyResult {
  readonly revision: number;
  readonly changes: readonly ApplyChange[];
  readonly dry_run: boolean;
}

const names = z.array(z.string().min(1)).default([]);
const yamlAccount = configDocument.shape.accounts.element;
// The YAML collaborators (users, teams → role `user`) plus what only the store can hold.
const account = yamlAccount.extend({
  collaborators: z
    .strictObject({
      users: names,
      teams: names,
      services: names,
      managers: z.strictObject({ users: names, teams: names, services: names }).default({ users: [], teams: [], services: [] }),
    })
    .default({ users: [], teams: [], services: [], managers: { users: [], teams: [], services: [] } }),
});
const model = configDocument.shape.models.element;
const team = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/i, 'must be 1–63 letters, digits, dot, dash or underscore'),
  description: z.string().max(1000).default(''),
  members: z.array(z.string().min(1)).default([]),
});

/** The sections of the YAML file apply does not store are accepted and ignored (pods read them). */
export const applyDocument = z.strictObject({
  version: z.literal(1).optional(),
  identity: z.unknown().optional(),
  providers: z.unknown().optional(),
  limits: z.unknown().optional(),
  cors: z.unknown().optional(),
  accounts: z.array(account).optional(),
  models: z.array(model).optional(),
  teams: z.array(team).optional(),
});
export type ApplyDocument = z.infer<typeof applyDocument>;

/** Parses a YAML or JSON body (JSON is YAML) into a validated document, or throws a 400 problem. */
export function parseApplyDocument(text: string): ApplyDocument {
  const yaml = parseDocument(text, { uniqueKeys: true });
  if (yaml.errors.length > 0) fail(400, 'invalid_document', `YAML: ${(yaml.errors[0]!.message.split('\n')[0] ?? '').replace(/:$/, '')}`);
  const parsed = applyDocument.safeParse(yaml.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = [...issue.path];
    if (issue.code === 'unrecognized_keys') path.push(issue.keys[0] ?? '');
    const field = formatPath(path);
    throw new ProblemError(problem(400, 'invalid_document', `${field ? `${field}: ` : ''}${issue.code === 'unrecognized_keys' ? 'is not a known field' : issue.message}`, field));
  }
  return parsed.data;
}

class DryRun extends Error {
  constructor(readonly result: ApplyResult) {
    super('dry run');
  }
}


function samePrice(a: Price, b: Price): boolean {
  return a.perThousandChars === b.perThousandChars && a.perMinute === b.perMinute && a.perMinuteStreaming === b.perMinuteStreaming;
}

function priceOf(p: { per_1k_chars?: string | undefined; per_minute?: string | undefined; per_minute_streaming?: string | undefined }): Price {
  return {
    ...(p.per_1k_chars !== undefined ? { perThousandChars: p.per_1k_chars } : {}),
    ...(p.per_minute !== undefined ? { perMinute: p.per_minute } : {}),
    ...(p.per_minute_streaming !== undefined ? { perMinuteStreaming: p.per_minute_streaming } : {}),
  };
}

/** Wanted collaborators of one account: subject → role (manager wins over user). */
function wantedCollaborators(c: z.infer<typeof account>['collaborators']): Map<Subject, CollaboratorRole> {
  const out = new Map<Subject, CollaboratorRole>();
  const add = (kind: 'user' | 'team' | 'service', list: readonly string[], role: CollaboratorRole) => {
    for (const n of list) if (out.get(`${kind}:${n}` as Subject) !== 'manager') out.set(`${kind}:${n}` as Subject, role);
  };
  add('user', c.users, 'user');
  add('team', c.teams, 'user');
  add('service', c.services, 'user');
  add('user', c.managers.users, 'manager');
  add('team', c.managers.teams, 'manager');
  add('service', c.managers.services, 'manager');
  return out;
}

export interface ApplyOptions {
  readonly actor: string;
  readonly dryRun: boolean;
  readonly resolveSecret?: ResolveSecret | undefined;
  /** Refuses (422, rolled back; on a dry run too) a document whose result cannot become the pods' snapshot. */
  readonly check?: ConfigurationCheck | undefined;
}

/** Converges `store` to `doc`; see the module comment. Store errors propagate (409, 400…). */
export async function applyConfiguration(store: ControlStore, doc: ApplyDocument, o: ApplyOptions): Promise<ApplyResult> {
  // Resolve every token before the transaction: file reads do not hold the store's lock.
  const tokens = new Map<string, string>();
  for (const [i, a] of (doc.accounts ?? []).entries()) {
    if (!o.resolveSecret) fail(400, 'invalid_document', `accounts[${i}].token: this control plane resolves no references`, `accounts[${i}].token`);
    const r = await o.resolveSecret(a.token);
    if (!r.ok) fail(400, 'invalid_document', `accounts[${i}].token: ${r.message}`, `accounts[${i}].token`);
    tokens.set(a.name, r.value);
  }
  const ctx = { actor: o.actor };
  try {
    return await store.atomically(ctx, async (tx) => {
      const before = o.check ? await tx.currentRevision() : 0;
      const changes: ApplyChange[] = [];
      const note = (action: ApplyChange['action'], resource: string, key: string) => changes.push({ action, resource, key });
      if (doc.teams) await convergeTeams(tx, doc.teams, ctx, note);
      if (doc.accounts) await convergeAccounts(tx, doc.accounts, tokens, ctx, note);
      if (doc.models) await convergeModels(tx, doc, ctx, note);
      if (o.check) await assertCompiles(tx, before, o.check);
      const result = { revision: await tx.currentRevision(), changes, dry_run: o.dryRun };
      if (o.dryRun) throw new DryRun(result);
      return result;
    });
  } catch (err) {
    if (err instanceof DryRun) return { ...err.result, revision: await store.currentRevision() };
    throw err;
  }
}

type Note = (action: ApplyChange['action'], resource: string, key: string) => void;
type Ctx = { readonly actor: string };

async function convergeTeams(tx: ControlStore, teams: readonly z.infer<typeof team>[], ctx: Ctx, note: Note): Promise<void> {
  const wanted = new Map(teams.map((t) => [t.name, t]));
  for (const t of await all((cursor) => tx.listTeams({ limit: 500, cursor }))) {
    if (!wanted.has(t.name)) {
      await tx.deleteTeam(t.name, ctx);
      note('delete', 'team', t.name);
    }
  }
  for (const t of teams) {
    const existing = await tx.getTeam(t.name);
    if (!existing) {
      await tx.createTeam({ name: t.name, description: t.description }, ctx);
      note('create', 'team', t.name);
    } else if (existing.description !== t.description) {
      await tx.updateTeam(t.name, { description: t.description }, existing.version, ctx);
      note('update', 'team', t.name);
    }
    const have = new Set(existing ? (await all((cursor) => tx.listTeamMembers(t.name, { limit: 500, cursor }))).map((m) => m.member) : []);
    const want = new Set(t.members);
    for (const m of have) {
      if (!want.has(m)) {
        await tx.removeTeamMember(t.name, m, ctx);
        note('delete', 'team_member', `${t.name}/${m}`);
      }
    }
    for (const m of want) {
      if (!have.has(m)) {
        await tx.addTeamMember(t.name, m, ctx);
        note('create', 'team_member', `${t.name}/${m}`);
      }
    }
  }
}

async function convergeAccounts(tx: ControlStore, accounts: readonly z.infer<typeof account>[], tokens: ReadonlyMap<string, string>, ctx: Ctx, note: Note): Promise<void> {
  const wanted = new Set(accounts.map((a) => a.name));
  for (const a of await all((cursor) => tx.listAccounts({ limit: 500, cursor }))) {
    if (!wanted.has(a.name)) {
      await tx.deleteAccount(a.name, ctx);
      note('delete', 'account', a.name);
    }
  }
  for (const a of accounts) {
    const token = tokens.get(a.name)!;
    let existing = await tx.getAccount(a.name);
    if (!existing) {
      await tx.createAccount({ name: a.name, provider: a.provider, concurrencyUnits: a.concurrency, wsPerUnit: a.ws_per_unit, token }, ctx);
      note('create', 'account', a.name);
    } else {
      if (existing.provider !== a.provider || existing.concurrencyUnits !== a.concurrency || existing.wsPerUnit !== a.ws_per_unit) {
        existing = await tx.updateAccount(a.name, { provider: a.provider, concurrencyUnits: a.concurrency, wsPerUnit: a.ws_per_unit }, existing.version, ctx);
        note('update', 'account', a.name);
      }
      // The fingerprint is 64 bits of SHA-256: equal fingerprints mean the same token.
      if (existing.secret.fingerprint !== describeSecret(token).fingerprint) {
        await tx.setAccountSecret(a.name, token, ctx, existing.version);
        note('update', 'account_secret', a.name);
      }
    }
    const want = wantedCollaborators(a.collaborators);
    const have = existing ? await all((cursor) => tx.listCollaborators(a.name, { limit: 500, cursor })) : [];
    for (const c of have) {
      const role = want.get(c.subject);
      if (role === undefined) {
        await tx.removeCollaborator(a.name, c.subject, ctx);
        note('delete', 'collaborator', `${a.name}/${c.subject}`);
      } else if (role !== c.role) {
        await tx.updateCollaborator(a.name, c.subject, { role }, c.version, ctx);
        note('update', 'collaborator', `${a.name}/${c.subject}`);
      }
    }
    const had = new Set(have.map((c) => c.subject as string));
    for (const [subject, role] of want) {
      if (!had.has(subject)) {
        await tx.addCollaborator(a.name, { subject, role }, ctx);
        note('create', 'collaborator', `${a.name}/${subject}`);
      }
    }
  }
}

async function convergeModels(tx: ControlStore, doc: ApplyDocument, ctx: Ctx, note: Note): Promise<void> {
  const models = doc.models ?? [];
  const key = (account: string, id: string) => `${account}/${id}`;
  for (const [i, m] of models.entries()) {
    const acc = await tx.getAccount(m.account);
    if (!acc) fail(400, 'invalid_document', `models[${i}].account: no account "${m.account}"`, `models[${i}].account`);
    if (acc.provider !== m.provider) {
      fail(400, 'invalid_document', `models[${i}].provider: account "${m.account}" is a "${acc.provider}" account`, `models[${i}].provider`);
    }
  }
  const wanted = new Map(models.map((m) => [key(m.account, m.name), m]));
  const existing = new Map<string, Model>((await all((cursor) => tx.listModels({}, { limit: 500, cursor }))).map((m) => [key(m.account, m.modelId), m]));
  // Deletes, then updates, then creates: an alias moving to another model is free before it is taken.
  for (const [k, m] of existing) {
    if (!wanted.has(k)) {
      await tx.deleteModel(m.account, m.modelId, ctx);
      note('delete', 'model', k);
    }
  }
  for (const [k, m] of wanted) {
    const have = existing.get(k);
    if (!have) continue;
    const price = priceOf(m.price);
    const sameAliases = have.aliases.length === m.aliases.length && have.aliases.every((a, i) => a === m.aliases[i]);
    // Absent in the document is no bound, as in the YAML: apply converges, so it clears a stored one.
    const maxSessionSeconds = m.max_session_seconds ?? null;
    if (have.type !== m.type || !sameAliases || !samePrice(have.price, price) || have.maxSessionSeconds !== maxSessionSeconds) {
      await tx.updateModel(m.account, m.name, { type: m.type, aliases: m.aliases, price, maxSessionSeconds }, have.version, ctx);
      note('update', 'model', k);
    }
  }
  for (const [k, m] of wanted) {
    if (existing.has(k)) continue;
    await tx.createModel(m.account, { modelId: m.name, type: m.type, aliases: m.aliases, price: priceOf(m.price), maxSessionSeconds: m.max_session_seconds ?? null }, ctx);
    note('create', 'model', k);
  }
}
