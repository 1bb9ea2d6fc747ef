/**
 * The API's wire shapes (snake_case, like the YAML document) as zod-openapi schemas, and the
 * mappings from the store's views. Bodies are strict objects: an unknown field is a 400 naming
 * it, never silently dropped. Views carry no secret: an account shows `secret` as
 * `{set, last4, fingerprint, updated_at}`, a service key only its hint.
 */
import { z } from '@hono/zod-openapi';
import { collaboratorRole, resourceName, subject } from '../../core/control/schemas.ts';
import type {
  Account,
  AuditEvent,
  Collaborator,
  JsonValue,
  Model,
  Price,
  ServiceAccount,
  ServiceKey,
  Team,
  TeamMember,
} from '../../core/control/store.ts';

const decimal = z.string().regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal written as a string, e.g. "0.0195"');
const time = z.string().openapi({ format: 'date-time' });
const token = z.string().min(1, 'must not be empty').max(8192).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces or line breaks');
const baseUrl = z.url({ protocol: /^https?$/ });
const units = z.number().int().min(1).max(10_000);
const wsPerUnit = z.number().int().min(1).max(100);
const aliases = z.array(resourceName).max(32);
const description = z.string().max(1000);
const isoTime = z.iso.datetime({ offset: true });
/** As the YAML's `max_session_seconds` (config/schema.ts); on a model, null clears it. */
const maxSessionSeconds = z
  .number()
  .int()
  .min(1)
  .max(604_800)
  .openapi({ description: 'longest a WebSocket session or SSE stream on this model lasts, seconds (the edge --max-session stays the ceiling)' });

export const PriceWire = z
  .strictObject({ per_1k_chars: decimal.optional(), per_minute: decimal.optional(), per_minute_streaming: decimal.optional() })
  .openapi('Price');

export const NewAccountBody = z
  .strictObject({
    name: resourceName,
    provider: resourceName.optional(),
    base_url: baseUrl.nullable().optional(),
    concurrency_units: units.optional(),
    ws_per_unit: wsPerUnit.optional(),
    token: token.optional().openapi({ description: 'the provider token; stored encrypted, never shown again' }),
  })
  .openapi('NewAccount');
export const AccountPatchBody = z
  .strictObject({ base_url: baseUrl.nullable().optional(), concurrency_units: units.optional(), ws_per_unit: wsPerUnit.optional() })
  .openapi('AccountPatch');
export const TokenBody = z.strictObject({ token }).openapi('AccountToken');
export const NewCollaboratorBody = z.strictObject({ subject, role: collaboratorRole }).openapi('NewCollaborator');
export const CollaboratorPatchBody = z.strictObject({ role: collaboratorRole }).openapi('CollaboratorPatch');
export const NewModelBody = z
  .strictObject({
    model_id: resourceName,
    type: z.enum(['tts', 'stt']),
    aliases: aliases.optional(),
    price: PriceWire.optional(),
    max_session_seconds: maxSessionSeconds.nullable().optional(),
  })
  .openapi('NewModel');
export const ModelPatchBody = z
  .strictObject({ aliases: aliases.optional(), price: PriceWire.optional(), max_session_seconds: maxSessionSeconds.nullable().optional() })
  .openapi('ModelPatch');
export const NewTeamBody = z.strictObject({ name: resourceName, description: description.optional() }).openapi('NewTeam');
export const DescriptionPatchBody = z.strictObject({ description }).openapi('DescriptionPatch');
export const NewMemberBody = z.strictObject({ member: z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be 1–200 printable characters without spaces') }).openapi('NewMember');
export const NewServiceAccountBody = z.strictObject({ name: resourceName, description: description.optional() }).openapi('NewServiceAccount');
export const NewKeyBody = z.strictObject({ expires_at: isoTime.nullable().optional() }).openapi('NewServiceKey');
export const RotateKeyBody = z
  .strictObject({ grace_seconds: z.number().int().min(0).max(30 * 86_400).optional(), expires_at: isoTime.nullable().optional() })
  .openapi('RotateServiceKey');

export const SecretWire = z
  .object({ set: z.boolean(), last4: z.string().nullable(), fingerprint: z.string().nullable(), updated_at: time.nullable() })
  .openapi('SecretView');
const versioned = { version: z.number().int(), created_at: time, updated_at: time };
export const AccountView = z
  .object({
    name: z.string(),
    provider: z.string(),
    base_url: z.string().nullable(),
    concurrency_units: z.number().int(),
    ws_per_unit: z.number().int(),
    secret: SecretWire,
    ...versioned,
  })
  .openapi('Account');
export const CollaboratorView = z.object({ account: z.string(), subject: z.string(), role: collaboratorRole, ...versioned }).openapi('Collaborator');
export const ModelView = z
  .object({
    account: z.string(),
    model_id: z.string(),
    type: z.enum(['tts', 'stt']),
    aliases: z.array(z.string()),
    price: PriceWire,
    max_session_seconds: z.number().int().nullable(),
    ...versioned,
  })
  .openapi('Model');
export const TeamView = z.object({ name: z.string(), description: z.string(), ...versioned }).openapi('Team');
export const MemberView = z.object({ team: z.string(), member: z.string(), created_at: time }).openapi('TeamMember');
export const ServiceAccountView = z
  .object({ name: z.string(), description: z.string(), subject: z.string(), ...versioned })
  .openapi('ServiceAccount');
export const ServiceKeyView = z
  .object({
    id: z.string(),
    service_account: z.string(),
    hint: z.string(),
    created_at: time,
    expires_at: time.nullable(),
    grace_until: time.nullable(),
    revoked_at: time.nullable(),
    replaced_by: z.string().nullable(),
  })
  .openapi('ServiceKey');
export const IssuedKeyView = ServiceKeyView.extend({
  key: z.string().openapi({ description: 'the key itself: shown this once, stored only as SHA-256' }),
  replaces: z.string().optional(),
}).openapi('IssuedServiceKey');
export const AuditView = z
  .object({
    id: z.number().int(),
    revision: z.number().int(),
    at: time,
    actor: z.string(),
    action: z.string(),
    resource: z.string(),
    resource_key: z.string(),
    before: z.unknown(),
    after: z.unknown(),
  })
  .openapi('AuditEvent');
export const UsageRowView = z
  .object({
    key: z.string(),
    requests: z.number().int(),
    errors: z.number().int(),
    characters: z.number().int(),
    audio_seconds: z.string(),
    cost: z.string().openapi({ description: 'USD, exact decimal' }),
  })
  .openapi('UsageRow');
export const ApplyResultView = z
  .object({
    revision: z.number().int(),
    dry_run: z.boolean(),
    changes: z.array(z.object({ action: z.enum(['create', 'update', 'delete']), resource: z.string(), key: z.string() })),
  })
  .openapi('ApplyResult');
export const ProblemView = z
  .object({ type: z.string(), title: z.string(), status: z.number().int(), detail: z.string(), field: z.string().optional() })
  .openapi('Problem');

/** `{items, next_cursor}` of a list. */
export function listOf<T extends z.ZodType>(item: T, name: string) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() }).openapi(name);
}

export function priceWire(p: Price): z.infer<typeof PriceWire> {
  return {
    ...(p.perThousandChars !== undefined ? { per_1k_chars: p.perThousandChars } : {}),
    ...(p.perMinute !== undefined ? { per_minute: p.perMinute } : {}),
    ...(p.perMinuteStreaming !== undefined ? { per_minute_streaming: p.perMinuteStreaming } : {}),
  };
}

export function priceOf(p: z.infer<typeof PriceWire>): Price {
  return {
    ...(p.per_1k_chars !== undefined ? { perThousandChars: p.per_1k_chars } : {}),
    ...(p.per_minute !== undefined ? { perMinute: p.per_minute } : {}),
    ...(p.per_minute_streaming !== undefined ? { perMinuteStreaming: p.per_minute_streaming } : {}),
  };
}

const times = (v: { version: number; createdAt: string; updatedAt: string }) => ({ version: v.version, created_at: v.createdAt, updated_at: v.updatedAt });

export const view = {
  account: (a: Account): z.infer<typeof AccountView> => ({
    name: a.name,
    provider: a.provider,
    base_url: a.baseUrl,
    concurrency_units: a.concurrencyUnits,
    ws_per_unit: a.wsPerUnit,
    secret: { set: a.secret.set, last4: a.secret.last4, fingerprint: a.secret.fingerprint, updated_at: a.secret.updatedAt },
    ...times(a),
  }),
  collaborator: (c: Collaborator): z.infer<typeof CollaboratorView> => ({ account: c.account, subject: c.subject, role: c.role, ...times(c) }),
  model: (m: Model): z.infer<typeof ModelView> => ({
    account: m.account,
    model_id: m.modelId,
    type: m.type,
    aliases: [...m.aliases],
    price: priceWire(m.price),
    max_session_seconds: m.maxSessionSeconds,
    ...times(m),
  }),
  team: (t: Team): z.infer<typeof TeamView> => ({ name: t.name, description: t.description, ...times(t) }),
  member: (m: TeamMember): z.infer<typeof MemberView> => ({ team: m.team, member: m.member, created_at: m.createdAt }),
  serviceAccount: (s: ServiceAccount): z.infer<typeof ServiceAccountView> => ({ name: s.name, description: s.description, subject: s.subject, ...times(s) }),
  serviceKey: (k: ServiceKey): z.infer<typeof ServiceKeyView> => ({
    id: k.id,
    service_account: k.serviceAccount,
    hint: k.hint,
    created_at: k.createdAt,
    expires_at: k.expiresAt,
    grace_until: k.graceUntil,
    revoked_at: k.revokedAt,
    replaced_by: k.replacedBy,
  }),
  audit: (e: AuditEvent): z.infer<typeof AuditView> => ({
    id: e.id,
    revision: e.revision,
    at: e.at,
    actor: e.actor,
    action: e.action,
    resource: e.resource,
    resource_key: e.resourceKey,
    before: snakeJson(e.before),
    after: snakeJson(e.after),
  }),
};

const JSON_KEYS: Record<string, string> = { perThousandChars: 'per_1k_chars' };

/** The store's audit views are camelCase; the wire is snake_case throughout. */
function snakeJson(v: JsonValue | null): JsonValue | null {
  if (Array.isArray(v)) return v.map((x) => snakeJson(x) as JsonValue);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [JSON_KEYS[k] ?? k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snakeJson(x) as JsonValue]),
  );
}
