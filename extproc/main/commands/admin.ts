/**
 * `voicegate admin RESOURCE ACTION [ARGS] [options]`: the admin API (`/admin/v1/…`) from the
 * command line, over HTTP only — it never opens the store. One option schema (ADMIN_OPTIONS)
 * serves every action, so `--help` lists each flag once and the parser is the project's; each
 * action then names the flags it takes, and any other flag on its line is a usage error.
 *
 * Changes to versioned resources read first and send the ETag as If-Match (read-modify-write):
 * a 412 means someone else changed the resource in between, and nothing is overwritten. Lists
 * follow the cursor to the end. A minted service key is printed once; with --quiet, alone.
 *
 * @example
 * voicegate admin accounts create acme-tts --units 4 --provider-token-file acme.key
 * voicegate admin collaborators add acme-tts user:alice --role manager
 * KEY=$(voicegate admin service-keys create ci --quiet)
 */
import type { z } from 'zod';
import {
  AdminApiError,
  Views,
  type AccountView,
  type AdminClient,
  type AuditView,
  type CollaboratorView,
  type IssuedKeyView,
  type MemberView,
  type ModelView,
  type ServiceAccountView,
  type ServiceKeyView,
  type TeamView,
} from '../../adapters/admin-api/client.ts';
import type { Command, RunContext } from '../command.ts';
import type { Parsed } from '../flags.ts';
import { parseOptions, usageText } from '../parse.ts';
import { ADMIN_OPTIONS } from '../admin-options.ts';
import { connect, details, guarded, json, readSecretArg, StaleWriteError, table, UsageError } from './admin-common.ts';

type Opts = Parsed<typeof ADMIN_OPTIONS>;
type FlagKey = keyof typeof ADMIN_OPTIONS;

interface Call {
  readonly ctx: RunContext;
  readonly client: AdminClient;
  readonly o: Opts;
  readonly args: readonly string[];
}

interface Action {
  /** `accounts create` */
  readonly words: string;
  /** Positional placeholders: `NAME`. */
  readonly args: readonly string[];
  /** Flags beyond the connection ones (--control-url, --token-file, --json). */
  readonly flags?: readonly FlagKey[];
  readonly required?: readonly FlagKey[];
  run(c: Call): Promise<void>;
}

const SUMMARY = 'manage the control plane over its admin API: accounts, collaborators, models, teams, service keys, audit, usage';
const CONNECTION: readonly FlagKey[] = ['controlUrl', 'tokenFile', 'json'];

const seg = encodeURIComponent;
const out = (c: Call, text: string) => c.ctx.stdout(text);

// ── rendering ───────────────────────────────────────────────────────────────────────────────
const dash = (v: string | null | undefined) => (v === null || v === undefined || v === '' ? '-' : v);

function secretOf(a: AccountView): string {
  return a.secret.set ? `set, …${a.secret.last4 ?? ''}, fingerprint ${a.secret.fingerprint ?? '-'}` : 'not set';
}

function priceOf(m: ModelView): string {
  const p = m.price;
  const parts = [
    p.per_1k_chars !== undefined ? `${p.per_1k_chars}/1k chars` : undefined,
    p.per_minute !== undefined ? `${p.per_minute}/min` : undefined,
    p.per_minute_streaming !== undefined ? `${p.per_minute_streaming}/min streaming` : undefined,
  ].filter((x) => x !== undefined);
  return parts.length ? parts.join(', ') : '-';
}

const render = {
  accounts: (xs: readonly AccountView[]) =>
    table(['NAME', 'PROVIDER', 'UNITS', 'WS/UNIT', 'BASE URL', 'TOKEN', 'VERSION'], xs.map((a) => [a.name, a.provider, String(a.concurrency_units), String(a.ws_per_unit), dash(a.base_url), a.secret.set ? `…${a.secret.last4 ?? ''}` : 'not set', String(a.version)])),
  account: (a: AccountView) =>
    details([
      ['name', a.name],
      ['provider', a.provider],
      ['base_url', dash(a.base_url)],
      ['concurrency_units', String(a.concurrency_units)],
      ['ws_per_unit', String(a.ws_per_unit)],
      ['token', secretOf(a)],
      ['token updated', dash(a.secret.updated_at)],
      ['version', String(a.version)],
      ['updated', a.updated_at],
    ]),
  collaborators: (xs: readonly CollaboratorView[]) => table(['ACCOUNT', 'SUBJECT', 'ROLE', 'VERSION'], xs.map((x) => [x.account, x.subject, x.role, String(x.version)])),
  models: (xs: readonly ModelView[]) =>
    table(['ACCOUNT', 'MODEL', 'TYPE', 'ALIASES', 'PRICE', 'VERSION'], xs.map((m) => [m.account, m.model_id, m.type, m.aliases.length ? m.aliases.join(',') : '-', priceOf(m), String(m.version)])),
  teams: (xs: readonly TeamView[]) => table(['NAME', 'DESCRIPTION', 'VERSION'], xs.map((t) => [t.name, dash(t.description), String(t.version)])),
  members: (xs: readonly MemberView[]) => table(['TEAM', 'MEMBER', 'ADDED'], xs.map((m) => [m.team, m.member, m.created_at])),
  serviceAccounts: (xs: readonly ServiceAccountView[]) => table(['NAME', 'SUBJECT', 'DESCRIPTION'], xs.map((s) => [s.name, s.subject, dash(s.description)])),
  keys: (xs: readonly ServiceKeyView[]) =>
    table(['ID', 'HINT', 'CREATED', 'EXPIRES', 'GRACE UNTIL', 'REVOKED', 'REPLACED BY'], xs.map((k) => [k.id, k.hint, k.created_at, dash(k.expires_at), dash(k.grace_until), dash(k.revoked_at), dash(k.replaced_by)])),
  audit: (xs: readonly AuditView[]) => table(['ID', 'REVISION', 'AT', 'ACTOR', 'ACTION', 'RESOURCE', 'KEY'], xs.map((e) => [String(e.id), String(e.revision), e.at, e.actor, e.action, e.resource, e.resource_key])),
};

/** A list: the API's shape with every page's items, or a table (or a line saying it is empty). */
function printList<T>(c: Call, items: readonly T[], what: string, draw: (xs: readonly T[]) => string): void {
  if (c.o.json) out(c, json({ items, next_cursor: null }));
  else out(c, items.length ? draw(items) : `no ${what}\n`);
}

/** One resource after a change: the API's JSON, or a status line and its fields. */
function printOne<T>(c: Call, value: T, line: string, draw: (x: T) => string): void {
  out(c, c.o.json ? json(value) : `${line}\n${draw(value)}`);
}

function printDone(c: Call, line: string): void {
  if (!c.o.json) out(c, `${line}\n`);
}

function printIssued(c: Call, k: IssuedKeyView, line: string): void {
  if (c.o.quiet) out(c, `${k.key}\n`);
  else if (c.o.json) out(c, json(k));
  else out(c, `${line} (id ${k.id}, hint ${k.hint}, expires ${k.expires_at ?? 'never'}). The key, shown this once:\n\n    ${k.key}\n\n`);
}

// ── calls ───────────────────────────────────────────────────────────────────────────────────
/** Read for the ETag, then change with If-Match; a 412 in between is {@link StaleWriteError}. */
async function readModifyWrite<V, T>(c: Call, what: string, path: string, view: z.ZodType<V>, method: 'PATCH' | 'PUT' | 'DELETE', answer: z.ZodType<T>, body?: unknown, writePath = path) {
  const current = await c.client.get(path, view);
  try {
    return await c.client.send(method, writePath, answer, { ifMatch: current.etag, ...(body !== undefined ? { body } : {}) });
  } catch (err) {
    if (err instanceof AdminApiError && err.status === 412) throw new StaleWriteError(what);
    throw err;
  }
}

const created = (status: number, what: string) => (status === 201 ? `created ${what}` : `${what} exists, identical: nothing changed`);

function arg(c: Call, i: number): string {
  return c.args[i]!;
}

function baseUrlOf(o: Opts): { base_url?: string | null } {
  if (o.baseUrl === undefined) return {};
  return { base_url: o.baseUrl === 'none' ? null : o.baseUrl };
}

function accountSettings(o: Opts) {
  return {
    ...baseUrlOf(o),
    ...(o.units !== undefined ? { concurrency_units: o.units } : {}),
    ...(o.wsPerUnit !== undefined ? { ws_per_unit: o.wsPerUnit } : {}),
  };
}

function priceFlags(o: Opts) {
  const price = {
    ...(o.pricePerThousandChars !== undefined ? { per_1k_chars: o.pricePerThousandChars } : {}),
    ...(o.pricePerMinute !== undefined ? { per_minute: o.pricePerMinute } : {}),
    ...(o.pricePerMinuteStreaming !== undefined ? { per_minute_streaming: o.pricePerMinuteStreaming } : {}),
  };
  return Object.keys(price).length ? { price } : {};
}

/** Aliases (all of them: the API replaces the list), price (the whole price) and session limit. */
function modelSettings(o: Opts) {
  return {
    ...(o.alias.length ? { aliases: o.alias } : {}),
    ...priceFlags(o),
    ...(o.maxSessionSeconds !== undefined ? { max_session_seconds: o.maxSessionSeconds } : {}),
  };
}

const described = (o: Opts) => (o.description !== undefined ? { description: o.description } : {});

const accountPath = (name: string) => `/admin/v1/accounts/${seg(name)}`;

export const ACTIONS: readonly Action[] = [
  // accounts
  { words: 'accounts list', args: [], run: async (c) => printList(c, await c.client.listAll('/admin/v1/accounts', Views.account), 'accounts', render.accounts) },
  {
    words: 'accounts get',
    args: ['NAME'],
    run: async (c) => {
      const { value } = await c.client.get(accountPath(arg(c, 0)), Views.account);
      out(c, c.o.json ? json(value) : render.account(value));
    },
  },
  {
    words: 'accounts create',
    args: ['NAME'],
    flags: ['provider', 'baseUrl', 'units', 'wsPerUnit', 'providerTokenFile'],
    run: async (c) => {
      const token = c.o.providerTokenFile !== undefined ? await readSecretArg(c.ctx, c.o.providerTokenFile, 'the provider token') : undefined;
      const body = { name: arg(c, 0), ...(c.o.provider !== undefined ? { provider: c.o.provider } : {}), ...accountSettings(c.o), ...(token !== undefined ? { token } : {}) };
      const r = await c.client.send('POST', '/admin/v1/accounts', Views.account, { body });
      printOne(c, r.value, created(r.status, `account ${r.value.name}`), render.account);
    },
  },
  {
    words: 'accounts update',
    args: ['NAME'],
    flags: ['baseUrl', 'units', 'wsPerUnit'],
    run: async (c) => {
      const body = accountSettings(c.o);
      if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give --base-url, --units or --ws-per-unit');
      const r = await readModifyWrite(c, `account "${arg(c, 0)}"`, accountPath(arg(c, 0)), Views.account, 'PATCH', Views.account, body);
      printOne(c, r.value, `updated account ${r.value.name}`, render.account);
    },
  },
  {
    words: 'accounts delete',
    args: ['NAME'],
    run: async (c) => {
      await readModifyWrite(c, `account "${arg(c, 0)}"`, accountPath(arg(c, 0)), Views.account, 'DELETE', Views.none);
      printDone(c, `deleted account ${arg(c, 0)} with its collaborators and models`);
    },
  },
  {
    words: 'accounts set-token',
    args: ['NAME'],
    flags: ['providerTokenFile'],
    required: ['providerTokenFile'],
    run: async (c) => {
      const token = await readSecretArg(c.ctx, c.o.providerTokenFile!, 'the provider token');
      const path = accountPath(arg(c, 0));
      const r = await readModifyWrite(c, `account "${arg(c, 0)}"`, path, Views.account, 'PUT', Views.account, { token }, `${path}/token`);
      const s = r.value.secret;
      if (c.o.json) out(c, json(r.value));
      else out(c, `set the provider token of account ${r.value.name}\n${details([['set', String(s.set)], ['last4', dash(s.last4)], ['fingerprint', dash(s.fingerprint)]])}`);
    },
  },

  // collaborators
  {
    words: 'collaborators list',
    args: ['ACCOUNT'],
    run: async (c) => printList(c, await c.client.listAll(`${accountPath(arg(c, 0))}/collaborators`, Views.collaborator), 'collaborators', render.collaborators),
  },
  {
    words: 'collaborators add',
    args: ['ACCOUNT', 'SUBJECT'],
    flags: ['role'],
    run: async (c) => {
      const r = await c.client.send('POST', `${accountPath(arg(c, 0))}/collaborators`, Views.collaborator, { body: { subject: arg(c, 1), role: c.o.role } });
      printOne(c, r.value, created(r.status, `collaborator ${r.value.subject} (${r.value.role}) of ${r.value.account}`), (x) => render.collaborators([x]));
    },
  },
  {
    words: 'collaborators set-role',
    args: ['ACCOUNT', 'SUBJECT', 'ROLE'],
    run: async (c) => {
      const role = arg(c, 2);
      if (role !== 'user' && role !== 'manager') throw new UsageError(`ROLE must be user or manager, not ${JSON.stringify(role)}`);
      const path = `${accountPath(arg(c, 0))}/collaborators/${seg(arg(c, 1))}`;
      const r = await readModifyWrite(c, `collaborator ${arg(c, 1)} of ${arg(c, 0)}`, path, Views.collaborator, 'PATCH', Views.collaborator, { role });
      printOne(c, r.value, `${r.value.subject} is now ${r.value.role} of ${r.value.account}`, (x) => render.collaborators([x]));
    },
  },
  {
    words: 'collaborators remove',
    args: ['ACCOUNT', 'SUBJECT'],
    run: async (c) => {
      const path = `${accountPath(arg(c, 0))}/collaborators/${seg(arg(c, 1))}`;
      await readModifyWrite(c, `collaborator ${arg(c, 1)} of ${arg(c, 0)}`, path, Views.collaborator, 'DELETE', Views.none);
      printDone(c, `removed collaborator ${arg(c, 1)} from ${arg(c, 0)}`);
    },
  },

  // models
  {
    words: 'models list',
    args: [],
    flags: ['account'],
    run: async (c) => {
      const path = c.o.account !== undefined ? `${accountPath(c.o.account)}/models` : '/admin/v1/models';
      printList(c, await c.client.listAll(path, Views.model), 'models', render.models);
    },
  },
  {
    words: 'models add',
    args: ['ACCOUNT', 'MODEL_ID'],
    flags: ['type', 'alias', 'pricePerThousandChars', 'pricePerMinute', 'pricePerMinuteStreaming', 'maxSessionSeconds'],
    required: ['type'],
    run: async (c) => {
      const body = { model_id: arg(c, 1), type: c.o.type, ...modelSettings(c.o) };
      const r = await c.client.send('POST', `${accountPath(arg(c, 0))}/models`, Views.model, { body });
      printOne(c, r.value, created(r.status, `model ${r.value.model_id} of ${r.value.account}`), (x) => render.models([x]));
    },
  },
  {
    words: 'models update',
    args: ['ACCOUNT', 'MODEL_ID'],
    flags: ['alias', 'pricePerThousandChars', 'pricePerMinute', 'pricePerMinuteStreaming', 'maxSessionSeconds'],
    run: async (c) => {
      const body = modelSettings(c.o);
      if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give --alias, a --price-… flag or --max-session-seconds');
      const path = `${accountPath(arg(c, 0))}/models/${seg(arg(c, 1))}`;
      const r = await readModifyWrite(c, `model ${arg(c, 1)} of ${arg(c, 0)}`, path, Views.model, 'PATCH', Views.model, body);
      printOne(c, r.value, `updated model ${r.value.model_id} of ${r.value.account}`, (x) => render.models([x]));
    },
  },
  {
    words: 'models remove',
    args: ['ACCOUNT', 'MODEL_ID'],
    run: async (c) => {
      const path = `${accountPath(arg(c, 0))}/models/${seg(arg(c, 1))}`;
      await readModifyWrite(c, `model ${arg(c, 1)} of ${arg(c, 0)}`, path, Views.model, 'DELETE', Views.none);
      printDone(c, `removed model ${arg(c, 1)} from ${arg(c, 0)}`);
    },
  },

  // teams
  { words: 'teams list', args: [], run: async (c) => printList(c, await c.client.listAll('/admin/v1/teams', Views.team), 'teams', render.teams) },
  {
    words: 'teams create',
    args: ['NAME'],
    flags: ['description'],
    run: async (c) => {
      const r = await c.client.send('POST', '/admin/v1/teams', Views.team, { body: { name: arg(c, 0), ...described(c.o) } });
      printOne(c, r.value, created(r.status, `team ${r.value.name}`), (x) => render.teams([x]));
    },
  },
  {
    words: 'teams delete',
    args: ['NAME'],
    run: async (c) => {
      await readModifyWrite(c, `team "${arg(c, 0)}"`, `/admin/v1/teams/${seg(arg(c, 0))}`, Views.team, 'DELETE', Views.none);
      printDone(c, `deleted team ${arg(c, 0)} with its members`);
    },
  },
  {
    words: 'teams members',
    args: ['TEAM'],
    run: async (c) => printList(c, await c.client.listAll(`/admin/v1/teams/${seg(arg(c, 0))}/members`, Views.member), 'members', render.members),
  },
  {
    words: 'teams add-member',
    args: ['TEAM', 'MEMBER'],
    run: async (c) => {
      const r = await c.client.send('POST', `/admin/v1/teams/${seg(arg(c, 0))}/members`, Views.member, { body: { member: arg(c, 1) } });
      printOne(c, r.value, r.status === 201 ? `added ${r.value.member} to team ${r.value.team}` : `${r.value.member} is already a member of ${r.value.team}`, (x) => render.members([x]));
    },
  },
  {
    words: 'teams remove-member',
    args: ['TEAM', 'MEMBER'],
    run: async (c) => {
      await c.client.send('DELETE', `/admin/v1/teams/${seg(arg(c, 0))}/members/${seg(arg(c, 1))}`, Views.none);
      printDone(c, `removed ${arg(c, 1)} from team ${arg(c, 0)}`);
    },
  },

  // service accounts and keys
  {
    words: 'service-keys accounts',
    args: [],
    run: async (c) => printList(c, await c.client.listAll('/admin/v1/service-accounts', Views.serviceAccount), 'service accounts', render.serviceAccounts),
  },
  {
    words: 'service-keys list',
    args: ['SA'],
    run: async (c) => printList(c, await c.client.listAll(`/admin/v1/service-accounts/${seg(arg(c, 0))}/keys`, Views.serviceKey), 'keys', render.keys),
  },
  {
    words: 'service-keys create-account',
    args: ['SA'],
    flags: ['description'],
    run: async (c) => {
      const r = await c.client.send('POST', '/admin/v1/service-accounts', Views.serviceAccount, { body: { name: arg(c, 0), ...described(c.o) } });
      printOne(c, r.value, created(r.status, `service account ${r.value.name} (${r.value.subject})`), (x) => render.serviceAccounts([x]));
    },
  },
  {
    words: 'service-keys delete-account',
    args: ['SA'],
    run: async (c) => {
      await readModifyWrite(c, `service account "${arg(c, 0)}"`, `/admin/v1/service-accounts/${seg(arg(c, 0))}`, Views.serviceAccount, 'DELETE', Views.none);
      printDone(c, `deleted service account ${arg(c, 0)} with its keys, collaborator entries and team memberships`);
    },
  },
  {
    words: 'service-keys create',
    args: ['SA'],
    flags: ['expires', 'quiet'],
    run: async (c) => {
      const body = c.o.expires !== undefined ? { expires_at: c.o.expires === 'none' ? null : c.o.expires } : {};
      const r = await c.client.send('POST', `/admin/v1/service-accounts/${seg(arg(c, 0))}/keys`, Views.issuedKey, { body });
      printIssued(c, r.value, `minted a key for service:${r.value.service_account}`);
    },
  },
  {
    words: 'service-keys rotate',
    args: ['SA', 'KEY_ID'],
    flags: ['grace', 'expires', 'quiet'],
    run: async (c) => {
      const body = { grace_seconds: c.o.grace, ...(c.o.expires !== undefined ? { expires_at: c.o.expires === 'none' ? null : c.o.expires } : {}) };
      const r = await c.client.send('POST', `/admin/v1/service-accounts/${seg(arg(c, 0))}/keys/${seg(arg(c, 1))}/rotate`, Views.issuedKey, { body });
      printIssued(c, r.value, `rotated key ${arg(c, 1)} of service:${r.value.service_account}, which keeps working ${c.o.grace}s more; the new key`);
    },
  },
  {
    words: 'service-keys revoke',
    args: ['SA', 'KEY_ID'],
    run: async (c) => {
      await c.client.send('DELETE', `/admin/v1/service-accounts/${seg(arg(c, 0))}/keys/${seg(arg(c, 1))}`, Views.none);
      printDone(c, `revoked key ${arg(c, 1)} of service account ${arg(c, 0)}`);
    },
  },

  // audit, usage
  {
    words: 'audit list',
    args: [],
    flags: ['resource', 'resourceKey'],
    run: async (c) => printList(c, await c.client.listAll('/admin/v1/audit-events', Views.audit, { resource: c.o.resource, key: c.o.resourceKey }), 'audit events', render.audit),
  },
  {
    words: 'usage',
    args: [],
    flags: ['by', 'from', 'to'],
    run: async (c) => {
      const { value } = await c.client.get('/admin/v1/usage', Views.usage, { by: c.o.by, from: c.o.from, to: c.o.to });
      if (c.o.json) return out(c, json(value));
      const rows = value.rows.map((r) => [r.key, String(r.requests), String(r.errors), String(r.characters), r.audio_seconds, r.cost]);
      out(c, `usage by ${value.by}, ${value.from} to ${value.to}\n${rows.length ? table([value.by.toUpperCase(), 'REQUESTS', 'ERRORS', 'CHARACTERS', 'AUDIO SECONDS', 'COST USD'], rows) : 'no usage recorded\n'}`);
    },
  },
];

// ── the command ─────────────────────────────────────────────────────────────────────────────
const byFlag = new Map(Object.entries(ADMIN_OPTIONS).map(([k, f]) => [f.flag, k as FlagKey]));

function synopsis(a: Action): string {
  const flags = (a.flags ?? []).map((k) => {
    const f = ADMIN_OPTIONS[k];
    const word = f.value === undefined ? `--${f.flag}` : `--${f.flag} ${f.value}`;
    return a.required?.includes(k) ? word : `[${word}]${f.multiple ? '…' : ''}`;
  });
  return [a.words, ...a.args, ...flags].join(' ');
}

function usage(name: string): string {
  const [, ...rest] = usageText(name, SUMMARY, ADMIN_OPTIONS).split('\n');
  const at = rest.indexOf('options:');
  return [
    `usage: voicegate ${name} RESOURCE ACTION [ARGS] [options]`,
    ...rest.slice(0, at),
    'actions:',
    ...ACTIONS.map((a) => `  ${synopsis(a)}`),
    '',
    'options (--control-url, --token-file, --json everywhere; the others where an action lists them):',
    ...rest.slice(at + 1),
  ].join('\n');
}

/** Positionals apart from flags; a flag that takes a value takes the next word, even `-`. */
function split(args: readonly string[]): { flags: string[]; positionals: string[]; given: Set<string> } {
  const flags: string[] = [];
  const positionals: string[] = [];
  const given = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      flags.push(a);
      if (!a.startsWith('--')) continue;
      const name = a.slice(2).split('=', 1)[0]!;
      given.add(name);
      const key = byFlag.get(name);
      if (key !== undefined && ADMIN_OPTIONS[key].value !== undefined && !a.includes('=') && i + 1 < args.length) flags.push(args[++i]!);
      continue;
    }
    positionals.push(a);
  }
  return { flags, positionals, given };
}

/** A resource word alone that stands for one of its actions (`audit` is `audit list`). */
const SHORTHAND: Readonly<Record<string, string>> = { audit: 'audit list' };

/** The action the leading words name, and how many words named it. */
function findAction(positionals: readonly string[]): { action: Action; words: number } | undefined {
  const two = positionals.slice(0, 2).join(' ');
  const exact = ACTIONS.find((a) => a.words === two || (a.words === positionals[0] && !a.words.includes(' ')));
  if (exact) return { action: exact, words: exact.words.split(' ').length };
  const short = SHORTHAND[positionals[0] ?? ''];
  const action = short !== undefined ? ACTIONS.find((a) => a.words === short) : undefined;
  return action ? { action, words: 1 } : undefined;
}

export const adminCommand: Command = {
  summary: SUMMARY,
  options: ADMIN_OPTIONS,
  usage,
  async run(args, ctx) {
    const firstLine = (text: string) => text.split('\n', 1)[0]!;
    const refuse = (line: string, usageLine = firstLine(usage(ctx.name))) => {
      ctx.stderr(`voicegate ${ctx.name}: ${line}\n${usageLine}\n`);
      return 2;
    };
    const { flags, positionals, given } = split(args);
    const found = findAction(positionals);
    const actionUsage = found ? `usage: voicegate ${ctx.name} ${synopsis(found.action)}` : undefined;
    if (given.has('provider-token')) return refuse('there is no --provider-token: a flag shows in `ps` and shell history; give --provider-token-file FILE, or - to read stdin', actionUsage);
    if (!found) {
      // A flag the parser does not know is the first thing to say (its value may be the "action").
      const anyway = parseOptions(ADMIN_OPTIONS, flags, ctx.env);
      if (!anyway.ok) return refuse(anyway.error);
      const what = positionals.length ? `unknown action "${positionals.slice(0, 2).join(' ')}"` : 'no action given';
      return refuse(`${what}; one of: ${[...new Set(ACTIONS.map((a) => a.words))].join(', ')}`);
    }
    const { action } = found;
    // A defined flag this action does not take, before values are parsed: `accounts list --units 0`
    // says --units is out of place. Undefined flags are the parser's to name.
    const allowed = new Set([...CONNECTION, ...(action.flags ?? [])].map((k) => ADMIN_OPTIONS[k].flag));
    const foreign = [...given].filter((f) => byFlag.has(f) && !allowed.has(f));
    if (foreign.length) return refuse(`${action.words} does not take ${foreign.map((f) => `--${f}`).join(', ')}`, actionUsage);
    const parsed = parseOptions(ADMIN_OPTIONS, flags, ctx.env);
    if (!parsed.ok) return refuse(parsed.error, actionUsage);
    const rest = positionals.slice(found.words);
    // Extra words are counted, not quoted: a secret pasted as an argument must not be echoed.
    if (rest.length !== action.args.length) {
      const extra = rest.length - action.args.length;
      return refuse(`${action.words} takes ${action.args.length ? action.args.join(' ') : 'no arguments'}${extra > 0 ? `, not ${extra} more word${extra === 1 ? '' : 's'}` : ''}`, actionUsage);
    }
    const missing = (action.required ?? []).filter((k) => parsed.value[k] === undefined);
    if (missing.length) return refuse(`${action.words} needs ${missing.map((k) => `--${ADMIN_OPTIONS[k].flag}`).join(', ')}`, actionUsage);
    if (action.words === 'models add' && parsed.value.type !== 'tts' && parsed.value.type !== 'stt') return refuse('--type must be tts or stt', actionUsage);

    return guarded(ctx, async () => {
      const client = await connect(ctx, parsed.value);
      await action.run({ ctx, client, o: parsed.value, args: rest });
      return 0;
    });
  },
};
