/**
 * Compiles a validated {@link ConfigDocument} into an immutable {@link Snapshot}: resolves secret
 * references, checks cross-references (account → provider, model → account, defaults → models)
 * and precomputes the lookup maps the decision uses. Every problem is collected, none is fatal
 * alone, so an operator sees the whole list at once.
 */
import type { JWK } from 'jose';
import type { ConfigDocument } from './schema.ts';
import type { ConfigIssue } from './errors.ts';
import type {
  AccountConfig,
  CorsPolicy,
  IssuerConfig,
  ModelAccount,
  ModelConfig,
  ModelType,
  Price,
  PrincipalLimits,
  PrincipalLimitTable,
  ProviderConfig,
  Snapshot,
} from './snapshot.ts';

/** List prices from Smallest AI's public pages (USD), used when a model names none. */
export const DEFAULT_PRICES: Readonly<Record<ModelType, Price>> = {
  tts: { perThousandChars: '0.0195' },
  stt: { perMinute: '0.0035', perMinuteStreaming: '0.006' },
};

/** The value behind a secret reference (`env:VAR`, `file:PATH`), or why it cannot be had. */
export type SecretResult = { ok: true; value: string } | { ok: false; message: string };

export interface CompileContext {
  /** Resolves a secret reference; the file source reads env and files, the control plane its store. */
  readonly resolveSecret: (ref: string) => Promise<SecretResult>;
  readonly origin: string;
  readonly version: number;
}

export type CompileResult = { ok: true; snapshot: Snapshot } | { ok: false; issues: ConfigIssue[] };

export async function compileConfig(doc: ConfigDocument, ctx: CompileContext): Promise<CompileResult> {
  const issues: ConfigIssue[] = [];
  const issuers = await compileIssuers(doc, ctx, issues);
  checkQualifiedNames(doc, issues);
  checkLimitNames(doc, issues);

  const providers = new Map<string, ProviderConfig>();
  const defaultModels = new Map<string, Partial<Record<ModelType, string>>>();
  for (const [name, p] of Object.entries(doc.providers)) {
    providers.set(name, { name, upstream: p.upstream.replace(/\/+$/, '') });
    defaultModels.set(name, { ...p.default_models });
  }

  const accounts = new Map<string, AccountConfig>();
  for (const [i, a] of doc.accounts.entries()) {
    const at = `accounts[${i}]`;
    if (accounts.has(a.name)) issues.push({ path: `${at}.name`, message: `duplicate account name "${a.name}"` });
    if (!providers.has(a.provider)) {
      issues.push({ path: `${at}.provider`, message: `unknown provider "${a.provider}"` });
    }
    const token = await ctx.resolveSecret(a.token);
    if (!token.ok) issues.push({ path: `${at}.token`, message: token.message });
    else if (/\s/.test(token.value)) issues.push({ path: `${at}.token`, message: 'token contains whitespace' });
    accounts.set(a.name, {
      name: a.name,
      provider: a.provider,
      token: token.ok ? token.value : '',
      users: new Set(a.collaborators.users),
      teams: new Set(a.collaborators.teams),
      concurrency: a.concurrency,
      wsPerUnit: a.ws_per_unit,
    });
  }

  const models = compileModels(doc, providers, accounts, issues);

  for (const [provider, defaults] of defaultModels) {
    for (const type of ['tts', 'stt'] as const) {
      const wanted = defaults[type];
      if (wanted === undefined) continue;
      const found = models.get(provider)?.get(wanted);
      const at = `providers.${provider}.default_models.${type}`;
      if (!found) issues.push({ path: at, message: `unknown model "${wanted}"` });
      else if (found.type !== type) issues.push({ path: at, message: `model "${wanted}" is ${found.type}, not ${type}` });
    }
  }

  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    snapshot: {
      version: ctx.version,
      origin: ctx.origin,
      issuers,
      providers,
      accounts,
      models,
      defaultModels,
      maxDecisionBodyBytes: doc.limits.max_decision_body_bytes,
      principalLimits: compilePrincipalLimits(doc.limits),
      ...(doc.cors ? { cors: compileCors(doc.cors) } : {}),
    },
  };
}

/**
 * `models[]` grouped by (provider, name): one name may be listed once per account serving it (as
 * the control plane keys a model by id within an account), and every name and alias of a
 * provider resolves to exactly one model name, so a request's model never depends on which entry
 * came first. Entries of one name must agree on the type; prices and session bounds may differ
 * per account.
 */
function compileModels(
  doc: ConfigDocument,
  providers: ReadonlyMap<string, ProviderConfig>,
  accounts: ReadonlyMap<string, AccountConfig>,
  issues: ConfigIssue[],
): Map<string, Map<string, ModelConfig>> {
  interface Group { name: string; provider: string; type: ModelType; at: string; accounts: ModelAccount[]; aliases: string[] }
  const groups = new Map<string, Group>();
  const seen = new Map<string, string>();
  for (const [i, m] of doc.models.entries()) {
    const at = `models[${i}]`;
    const account = accounts.get(m.account);
    if (!providers.has(m.provider)) issues.push({ path: `${at}.provider`, message: `unknown provider "${m.provider}"` });
    if (!account) issues.push({ path: `${at}.account`, message: `unknown account "${m.account}"` });
    else if (account.provider !== m.provider) {
      issues.push({
        path: `${at}.account`,
        message: `account "${m.account}" belongs to provider "${account.provider}", not "${m.provider}"`,
      });
    }
    const pair = `${m.provider}\u0000${m.name}\u0000${m.account}`;
    const first = seen.get(pair);
    if (first !== undefined) {
      issues.push({ path: `${at}.account`, message: `model "${m.name}" is already listed for account "${m.account}" at ${first}` });
      continue;
    }
    seen.set(pair, at);
    const price: Price = {
      perThousandChars: m.price.per_1k_chars ?? DEFAULT_PRICES[m.type].perThousandChars,
      perMinute: m.price.per_minute ?? DEFAULT_PRICES[m.type].perMinute,
      perMinuteStreaming:
        m.price.per_minute_streaming ?? m.price.per_minute ?? DEFAULT_PRICES[m.type].perMinuteStreaming,
    };
    const entry: ModelAccount = {
      account: m.account,
      price,
      ...(m.max_session_seconds !== undefined ? { maxSessionMs: m.max_session_seconds * 1000 } : {}),
    };
    const key = `${m.provider}\u0000${m.name}`;
    const group = groups.get(key);
    if (!group) {
      groups.set(key, { name: m.name, provider: m.provider, type: m.type, at, accounts: [entry], aliases: [...m.aliases] });
      continue;
    }
    if (group.type !== m.type) {
      issues.push({ path: `${at}.type`, message: `model "${m.name}" is ${group.type} at ${group.at}; every entry of one model has the same type` });
      continue;
    }
    group.accounts.push(entry);
    for (const a of m.aliases) if (!group.aliases.includes(a)) group.aliases.push(a);
  }

  const models = new Map<string, Map<string, ModelConfig>>();
  for (const g of groups.values()) {
    const model: ModelConfig = { name: g.name, provider: g.provider, type: g.type, accounts: g.accounts, aliases: g.aliases };
    let byName = models.get(g.provider);
    if (!byName) models.set(g.provider, (byName = new Map()));
    for (const key of [g.name, ...g.aliases]) {
      const clash = byName.get(key);
      if (clash && clash !== model) {
        issues.push({ path: g.at, message: `model name or alias "${key}" is already used by "${clash.name}"` });
      } else byName.set(key, model);
    }
  }
  return models;
}

/** Header names lower-cased and methods kept as written, each once, so answers are stable. */
export function compileCors(c: NonNullable<ConfigDocument['cors']>): CorsPolicy {
  return {
    allowedOrigins: c.allowed_origins.includes('*') ? '*' : new Set(c.allowed_origins),
    allowedMethods: [...new Set(c.allowed_methods)],
    allowedHeaders: [...new Set(c.allowed_headers.map((h) => h.toLowerCase()))],
    exposedHeaders: [...new Set(c.expose_headers.map((h) => h.toLowerCase()))],
    maxAgeSeconds: c.max_age_seconds,
  };
}

async function compileIssuers(doc: ConfigDocument, ctx: CompileContext, issues: ConfigIssue[]): Promise<IssuerConfig[]> {
  const out: IssuerConfig[] = [];
  for (const [i, iss] of doc.identity.issuers.entries()) {
    const at = `identity.issuers[${i}]`;
    let jwks: { keys: JWK[] } | undefined;
    if (typeof iss.jwks === 'string') {
      const text = await ctx.resolveSecret(iss.jwks);
      if (!text.ok) issues.push({ path: `${at}.jwks`, message: text.message });
      else jwks = parseJwks(text.value, `${at}.jwks`, issues);
    } else if (iss.jwks) {
      jwks = { keys: iss.jwks.keys as JWK[] };
    }
    if (jwks) {
      for (const [k, key] of jwks.keys.entries()) {
        if (typeof key.kty !== 'string') issues.push({ path: `${at}.jwks.keys[${k}]`, message: 'missing kty' });
        if ('d' in key) {
          issues.push({ path: `${at}.jwks.keys[${k}]`, message: 'is a private key; a JWKS must hold public keys only' });
        }
      }
    }
    let devSigningKey: JWK | undefined;
    if (iss.dev_signing_key) {
      const text = await ctx.resolveSecret(iss.dev_signing_key);
      if (!text.ok) issues.push({ path: `${at}.dev_signing_key`, message: text.message });
      else {
        try {
          const parsed: unknown = JSON.parse(text.value);
          if (typeof parsed !== 'object' || parsed === null || !('d' in parsed)) {
            issues.push({ path: `${at}.dev_signing_key`, message: 'must be a private JWK (with "d")' });
          } else devSigningKey = parsed as JWK;
        } catch {
          issues.push({ path: `${at}.dev_signing_key`, message: 'is not valid JSON' });
        }
      }
    }
    out.push({
      issuer: iss.issuer,
      ...(iss.name !== undefined ? { name: iss.name } : {}),
      audiences: iss.audiences,
      ...(iss.jwks_url !== undefined ? { jwksUrl: iss.jwks_url } : {}),
      ...(jwks ? { jwks } : {}),
      algorithms: iss.algorithms,
      userClaim: iss.claims.user,
      teamsClaim: iss.claims.teams,
      rolesClaim: iss.claims.roles,
      clockToleranceSec: iss.clock_skew_seconds,
      ...(devSigningKey ? { devSigningKey } : {}),
    });
  }
  const seen = new Set<string>();
  const names = new Set<string>();
  let unnamed: number | undefined;
  for (const [i, iss] of out.entries()) {
    if (seen.has(iss.issuer)) issues.push({ path: `identity.issuers[${i}].issuer`, message: `duplicate issuer "${iss.issuer}"` });
    seen.add(iss.issuer);
    // Two issuers with the same (or no) name would map two people onto one user.
    if (iss.name === undefined) {
      if (unnamed !== undefined) {
        issues.push({
          path: `identity.issuers[${i}].name`,
          message: `identity.issuers[${unnamed}] already has no name; give every issuer but one a name (it qualifies users and teams as name:alice)`,
        });
      }
      unnamed ??= i;
    } else if (names.has(iss.name)) {
      issues.push({ path: `identity.issuers[${i}].name`, message: `duplicate issuer name "${iss.name}"` });
    } else names.add(iss.name);
  }
  return out;
}

/**
 * Collaborators qualified with an issuer name that no issuer has (`crop:alice`) can never match a
 * token: report them instead of silently granting nothing. Only checked once some issuer is named;
 * with none, a `:` is an ordinary character of a plain name.
 */
function checkQualifiedNames(doc: ConfigDocument, issues: ConfigIssue[]): void {
  const names = new Set(doc.identity.issuers.flatMap((i) => (i.name === undefined ? [] : [i.name])));
  if (names.size === 0) return;
  for (const [i, a] of doc.accounts.entries()) {
    for (const kind of ['users', 'teams'] as const) {
      for (const [j, who] of a.collaborators[kind].entries()) {
        // `service:<name>` is the user a gateway service key is authorized as, not an issuer's name.
        if (kind === 'users' && who.startsWith('service:')) continue;
        const colon = who.indexOf(':');
        if (colon !== -1 && !names.has(who.slice(0, colon))) {
          issues.push({
            path: `accounts[${i}].collaborators.${kind}[${j}]`,
            message: `"${who}" is qualified with "${who.slice(0, colon)}", which is no issuer's name (${[...names].sort().join(', ')})`,
          });
        }
      }
    }
  }
}

/** `limits.users` / `limits.teams` in the snapshot's camelCase; absent fields stay absent. */
export function compilePrincipalLimits(l: ConfigDocument['limits']): PrincipalLimitTable {
  const one = (p: ConfigDocument['limits']['teams'][string]): PrincipalLimits => ({
    ...(p.max_units !== undefined ? { maxUnits: p.max_units } : {}),
    ...(p.max_sessions !== undefined ? { maxSessions: p.max_sessions } : {}),
    ...(p.requests_per_minute !== undefined ? { requestsPerMinute: p.requests_per_minute } : {}),
    ...(p.max_session_seconds !== undefined ? { maxSessionMs: p.max_session_seconds * 1000 } : {}),
    ...(p.wait !== undefined ? { wait: { maxMs: p.wait.max_ms, maxWaiters: p.wait.max_waiters } } : {}),
  });
  return {
    users: new Map(Object.entries(l.users).map(([who, p]) => [who, one(p)])),
    teams: new Map(Object.entries(l.teams).map(([who, p]) => [who, one(p)])),
  };
}

/**
 * A limit on a name qualified with an issuer no one has (`crop:alice`) would never apply: the
 * operator believes a cap is in force that is not. Same rule as for collaborators.
 */
function checkLimitNames(doc: ConfigDocument, issues: ConfigIssue[]): void {
  const names = new Set(doc.identity.issuers.flatMap((i) => (i.name === undefined ? [] : [i.name])));
  if (names.size === 0) return;
  for (const kind of ['users', 'teams'] as const) {
    for (const who of Object.keys(doc.limits[kind])) {
      const colon = who.indexOf(':');
      if (colon !== -1 && !names.has(who.slice(0, colon))) {
        issues.push({
          path: `limits.${kind}.${who}`,
          message: `"${who}" is qualified with "${who.slice(0, colon)}", which is no issuer's name (${[...names].sort().join(', ')})`,
        });
      }
    }
  }
}

function parseJwks(text: string, at: string, issues: ConfigIssue[]): { keys: JWK[] } | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && Array.isArray((parsed as { keys?: unknown }).keys)) {
      return parsed as { keys: JWK[] };
    }
    issues.push({ path: at, message: 'is not a JWKS ({"keys":[…]})' });
  } catch {
    issues.push({ path: at, message: 'is not valid JSON' });
  }
  return undefined;
}
