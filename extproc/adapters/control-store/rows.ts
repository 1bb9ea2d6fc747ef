/**
 * Column lists and row decoders shared by every query. `pg` and PGlite decode a few types
 * differently (int8: string vs number; bytea: Buffer vs Uint8Array), so ids and bigints are
 * selected as text and every value goes through one decoder here.
 */
import type { SealedSecret } from '../../core/control/envelope.ts';
import type {
  Account,
  AuditEvent,
  Collaborator,
  CollaboratorRole,
  JsonValue,
  Model,
  ModelType,
  Price,
  ResourceKind,
  ServiceAccount,
  ServiceKey,
  Subject,
  Team,
  TeamMember,
} from '../../core/control/store.ts';

export function iso(v: unknown): string {
  return (v instanceof Date ? v : new Date(String(v))).toISOString();
}
export function isoOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : iso(v);
}
export function int(v: unknown): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`expected an integer from the database, got ${typeof v}`);
  return n;
}
export function bytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  throw new Error('expected bytea from the database');
}

export const ACCOUNT_SELECT = `
SELECT a.id::text AS id, a.name, a.provider, a.base_url, a.concurrency_units, a.ws_per_unit,
       a.row_version, a.created_at, a.updated_at,
       s.secret_version, s.algorithm, s.kek_id, s.wrapped_key, s.ciphertext, s.last4, s.fingerprint,
       s.updated_at AS secret_updated_at
  FROM control.accounts a LEFT JOIN control.account_secrets s ON s.account_id = a.id`;

export interface AccountRow {
  id: string;
  name: string;
  provider: string;
  base_url: string | null;
  concurrency_units: number;
  ws_per_unit: number;
  row_version: number;
  created_at: unknown;
  updated_at: unknown;
  secret_version: number | null;
  algorithm: string | null;
  kek_id: string | null;
  wrapped_key: unknown;
  ciphertext: unknown;
  last4: string | null;
  fingerprint: string | null;
  secret_updated_at: unknown;
}

export function toAccount(r: AccountRow): Account {
  const set = r.secret_version !== null;
  return {
    id: r.id,
    name: r.name,
    provider: r.provider,
    baseUrl: r.base_url,
    concurrencyUnits: int(r.concurrency_units),
    wsPerUnit: int(r.ws_per_unit),
    secret: set
      ? { set: true, last4: r.last4, fingerprint: r.fingerprint, updatedAt: iso(r.secret_updated_at) }
      : { set: false, last4: null, fingerprint: null, updatedAt: null },
    version: int(r.row_version),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export function sealedOf(r: AccountRow): (SealedSecret & { version: number }) | null {
  if (r.secret_version === null || r.algorithm === null || r.kek_id === null) return null;
  return {
    algorithm: r.algorithm,
    kekId: r.kek_id,
    wrappedKey: bytes(r.wrapped_key),
    ciphertext: bytes(r.ciphertext),
    version: int(r.secret_version),
  };
}

export const COLLABORATOR_SELECT = `
SELECT a.name AS account, c.subject, c.role, c.row_version, c.created_at, c.updated_at
  FROM control.collaborators c JOIN control.accounts a ON a.id = c.account_id`;

export interface CollaboratorRow {
  account: string;
  subject: string;
  role: string;
  row_version: number;
  created_at: unknown;
  updated_at: unknown;
}

export function toCollaborator(r: CollaboratorRow): Collaborator {
  return {
    account: r.account,
    subject: r.subject as Subject,
    role: r.role as CollaboratorRole,
    version: int(r.row_version),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export const MODEL_SELECT = `
SELECT m.id::text AS id, a.name AS account, m.model_id, m.type, m.aliases,
       m.price_per_1k_chars::text AS per_1k, m.price_per_minute::text AS per_minute,
       m.price_per_minute_streaming::text AS per_minute_streaming, m.max_session_seconds,
       m.row_version, m.created_at, m.updated_at
  FROM control.models m JOIN control.accounts a ON a.id = m.account_id`;

export interface ModelRow {
  id: string;
  account: string;
  model_id: string;
  type: string;
  aliases: string[];
  per_1k: string | null;
  per_minute: string | null;
  per_minute_streaming: string | null;
  max_session_seconds: number | null;
  row_version: number;
  created_at: unknown;
  updated_at: unknown;
}

export function toModel(r: ModelRow): Model {
  const price: { -readonly [K in keyof Price]: Price[K] } = {};
  if (r.per_1k !== null) price.perThousandChars = r.per_1k;
  if (r.per_minute !== null) price.perMinute = r.per_minute;
  if (r.per_minute_streaming !== null) price.perMinuteStreaming = r.per_minute_streaming;
  return {
    id: r.id,
    account: r.account,
    modelId: r.model_id,
    type: r.type as ModelType,
    aliases: [...r.aliases],
    price,
    maxSessionSeconds: r.max_session_seconds === null ? null : int(r.max_session_seconds),
    version: int(r.row_version),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export const TEAM_SELECT = `SELECT t.id::text AS id, t.name, t.description, t.row_version, t.created_at, t.updated_at FROM control.teams t`;
export const SERVICE_ACCOUNT_SELECT = `SELECT t.id::text AS id, t.name, t.description, t.row_version, t.created_at, t.updated_at FROM control.service_accounts t`;

export interface NamedRow {
  id: string;
  name: string;
  description: string;
  row_version: number;
  created_at: unknown;
  updated_at: unknown;
}

export function toTeam(r: NamedRow): Team {
  return { id: r.id, name: r.name, description: r.description, version: int(r.row_version), createdAt: iso(r.created_at), updatedAt: iso(r.updated_at) };
}

export function toServiceAccount(r: NamedRow): ServiceAccount {
  return { ...toTeam(r), subject: `service:${r.name}` };
}

export interface MemberRow {
  team: string;
  member: string;
  created_at: unknown;
}
export function toMember(r: MemberRow): TeamMember {
  return { team: r.team, member: r.member, createdAt: iso(r.created_at) };
}

export const SERVICE_KEY_SELECT = `
SELECT k.id::text AS id, k.seq::text AS seq, sa.name AS service_account, k.hint, k.key_hash, k.created_at, k.expires_at,
       k.grace_until, k.revoked_at, k.replaced_by::text AS replaced_by
  FROM control.service_keys k JOIN control.service_accounts sa ON sa.id = k.service_account_id`;

export interface ServiceKeyRow {
  id: string;
  seq: string;
  service_account: string;
  hint: string;
  key_hash: string;
  created_at: unknown;
  expires_at: unknown;
  grace_until: unknown;
  revoked_at: unknown;
  replaced_by: string | null;
}

export function toServiceKey(r: ServiceKeyRow): ServiceKey {
  return {
    id: r.id,
    serviceAccount: r.service_account,
    hint: r.hint,
    createdAt: iso(r.created_at),
    expiresAt: isoOrNull(r.expires_at),
    graceUntil: isoOrNull(r.grace_until),
    revokedAt: isoOrNull(r.revoked_at),
    replacedBy: r.replaced_by,
  };
}

/** Not revoked, and `at` before both its expiry and its rotation grace. */
export function keyValidAt(k: ServiceKey, at: Date): boolean {
  if (k.revokedAt !== null) return false;
  const t = at.getTime();
  if (k.expiresAt !== null && Date.parse(k.expiresAt) <= t) return false;
  if (k.graceUntil !== null && Date.parse(k.graceUntil) <= t) return false;
  return true;
}

/** The earlier of expiry and grace end, or null when the key has neither. */
export function keyNotAfter(k: ServiceKey): string | null {
  const ends = [k.expiresAt, k.graceUntil].filter((v): v is string => v !== null).sort((a, b) => Date.parse(a) - Date.parse(b));
  return ends[0] ?? null;
}

export const AUDIT_SELECT = `
SELECT e.id::text AS id, e.revision::text AS revision, e.at, e.actor, e.action, e.resource, e.resource_key, e.before, e.after
  FROM control.audit_events e`;

export interface AuditRow {
  id: string;
  revision: string;
  at: unknown;
  actor: string;
  action: string;
  resource: string;
  resource_key: string;
  before: JsonValue | null;
  after: JsonValue | null;
}

export function toAudit(r: AuditRow): AuditEvent {
  return {
    id: int(r.id),
    revision: int(r.revision),
    at: iso(r.at),
    actor: r.actor,
    action: r.action,
    resource: r.resource as ResourceKind,
    resourceKey: r.resource_key,
    before: r.before,
    after: r.after,
  };
}
