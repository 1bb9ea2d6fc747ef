/**
 * The control-plane store: the port the admin API, the CLI and the snapshot publisher stand on.
 * Plain types only; implementations live in extproc/adapters/control-store/ (PostgreSQL and
 * PGlite share one SQL implementation).
 *
 * Invariants every implementation keeps:
 * - every mutating call is one transaction that also writes its audit event(s) and bumps the
 *   configuration revision; a call that fails leaves neither;
 * - revisions are gap-free and in commit order (writers are serialised on the revision row);
 * - updates take the row `version` the caller read and fail with VersionConflictError otherwise;
 * - creating what already exists, identically, is not an error: it answers `created: false`
 *   and changes nothing (no audit event, no revision) — so a retried POST is idempotent without
 *   an idempotency-key table; the same natural key with different content is a DuplicateError;
 * - provider tokens are stored only sealed (see envelope.ts) and shown only as a SecretView;
 *   service keys are stored only as SHA-256 and returned in plaintext once, by the call that mints them.
 */
import type { ModelType, Price } from '../config/snapshot.ts';
import type { SealedSecret, SecretBinding, SecretView } from './envelope.ts';
import type { ResourceKind } from './errors.ts';

export type { ModelType, Price, ResourceKind, SecretView };

/** Who a collaborator entry names: a user, a team or a service account. */
export type Subject = `user:${string}` | `team:${string}` | `service:${string}`;
export type CollaboratorRole = 'manager' | 'user';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Fields of every row the API can update: `version` is its ETag. Times are ISO 8601 UTC. */
export interface Versioned {
  readonly version: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface Account extends Versioned {
  readonly id: string;
  readonly name: string;
  readonly provider: string;
  /** Upstream base URL overriding the provider's, or null. */
  readonly baseUrl: string | null;
  /** Provider concurrency units bought for this account's key. */
  readonly concurrencyUnits: number;
  /** TTS WebSocket connections each unit allows. */
  readonly wsPerUnit: number;
  readonly secret: SecretView;
}

export interface Collaborator extends Versioned {
  readonly account: string;
  readonly subject: Subject;
  readonly role: CollaboratorRole;
}

export interface Model extends Versioned {
  readonly id: string;
  readonly account: string;
  /** The model id as it appears in provider paths (`lightning-v3.1`, `pulse`); unique per account, not globally. */
  readonly modelId: string;
  readonly type: ModelType;
  readonly aliases: readonly string[];
  readonly price: Price;
  /** Longest a WebSocket session or SSE stream on this model lasts, seconds; null: no bound of its own. */
  readonly maxSessionSeconds: number | null;
}

export interface Team extends Versioned {
  readonly id: string;
  readonly name: string;
  readonly description: string;
}

export interface TeamMember {
  readonly team: string;
  /** A user name as the identity layer produces it (`alice`, `corp:alice`) or `service:<name>`. */
  readonly member: string;
  readonly createdAt: string;
}

export interface ServiceAccount extends Versioned {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** The identity its keys authenticate as: `service:<name>`. */
  readonly subject: `service:${string}`;
}

export interface ServiceKey {
  readonly id: string;
  readonly serviceAccount: string;
  /** First characters of the key (`vg_AbCd`), to tell keys apart in listings. */
  readonly hint: string;
  readonly createdAt: string;
  /** The key's own expiry, or null. */
  readonly expiresAt: string | null;
  /** Set when the key was rotated: it keeps working until then. */
  readonly graceUntil: string | null;
  readonly revokedAt: string | null;
  /** Id of the key that replaced it by rotation. */
  readonly replacedBy: string | null;
}

export interface AuditEvent {
  /** Monotonic (not gap-free) event id; newest first in listings. */
  readonly id: number;
  /** The configuration revision this change committed as. */
  readonly revision: number;
  readonly at: string;
  readonly actor: string;
  /** `<resource>.<verb>`, e.g. `account.create`, `account_secret.set`, `service_key.revoke`. */
  readonly action: string;
  readonly resource: ResourceKind;
  /** The resource's natural key (`smallest-tts`, `smallest-tts/user:alice`, `smallest-tts/pulse`). */
  readonly resourceKey: string;
  /** API views before and after; secrets appear only as SecretView, service keys only as hints. */
  readonly before: JsonValue | null;
  readonly after: JsonValue | null;
}

/** Who is changing the configuration: `user:alice`, `service:ci`, `system:bootstrap`. */
export interface MutationContext {
  readonly actor: string;
}

export interface Created<T> {
  readonly value: T;
  /** False when an identical resource already existed (nothing was changed). */
  readonly created: boolean;
}

export interface PageRequest {
  /** 1–500, default 100. */
  readonly limit?: number;
  /** `nextCursor` of the previous page. */
  readonly cursor?: string | null;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Null on the last page. */
  readonly nextCursor: string | null;
}

export interface NewAccount {
  readonly name: string;
  readonly provider?: string;
  readonly baseUrl?: string | null;
  readonly concurrencyUnits?: number;
  readonly wsPerUnit?: number;
  /** The provider token; stored sealed, never returned. */
  readonly token?: string;
}
export interface AccountPatch {
  readonly provider?: string;
  readonly baseUrl?: string | null;
  readonly concurrencyUnits?: number;
  readonly wsPerUnit?: number;
}
export interface NewCollaborator {
  readonly subject: Subject;
  readonly role: CollaboratorRole;
}
export interface NewModel {
  readonly modelId: string;
  readonly type: ModelType;
  readonly aliases?: readonly string[];
  readonly price?: Price;
  /** Absent or null: no bound of the model's own. */
  readonly maxSessionSeconds?: number | null;
}
export interface ModelPatch {
  readonly type?: ModelType;
  readonly aliases?: readonly string[];
  /** Replaces the whole price. */
  readonly price?: Price;
  /** Null clears the bound; absent keeps it. */
  readonly maxSessionSeconds?: number | null;
}
export interface NewTeam {
  readonly name: string;
  readonly description?: string;
}
export interface TeamPatch {
  readonly description?: string;
}
export interface NewServiceAccount {
  readonly name: string;
  readonly description?: string;
}
export interface ServiceAccountPatch {
  readonly description?: string;
}
export interface NewServiceKey {
  readonly expiresAt?: string | null;
}
export interface RotateServiceKey {
  /** How long the old key keeps working, 0–30 days. */
  readonly graceSeconds: number;
  /** Expiry of the new key; absent inherits the old key's, null means none. */
  readonly expiresAt?: string | null;
}

/** A key as minted: the plaintext exists only in this value. */
export interface IssuedServiceKey {
  readonly key: ServiceKey;
  readonly plaintext: string;
}

export interface ServiceKeyMatch {
  readonly serviceAccount: ServiceAccount;
  readonly key: ServiceKey;
  /** Not revoked, not expired, not past its rotation grace — at the store's clock. */
  readonly valid: boolean;
}

/** A sealed token with what it is bound to: the snapshot compiler opens it with the keyring. */
export type StoredSecret = SealedSecret & SecretBinding;

/** Everything a snapshot compiler needs, read in one consistent transaction. */
export interface ControlConfiguration {
  readonly revision: number;
  readonly accounts: readonly (Account & {
    readonly sealedSecret: StoredSecret | null;
    readonly collaborators: readonly { readonly subject: Subject; readonly role: CollaboratorRole }[];
  })[];
  readonly models: readonly Model[];
  readonly teams: readonly (Team & { readonly members: readonly string[] })[];
  readonly serviceAccounts: readonly (ServiceAccount & {
    /** Keys usable at load time or later: not revoked, not yet past expiry or grace. */
    readonly keys: readonly { readonly id: string; readonly hash: string; readonly notAfter: string | null }[];
  })[];
}

export interface AuditFilter {
  readonly resource?: ResourceKind;
  readonly resourceKey?: string;
}

export interface ModelFilter {
  readonly account?: string;
  readonly modelId?: string;
}

/**
 * The store port. Getters answer undefined for a missing resource; mutations throw NotFoundError,
 * VersionConflictError, DuplicateError or InvalidInputError (extproc/core/control/errors.ts).
 */
export interface ControlStore {
  createAccount(input: NewAccount, ctx: MutationContext): Promise<Created<Account>>;
  getAccount(name: string): Promise<Account | undefined>;
  listAccounts(page?: PageRequest): Promise<Page<Account>>;
  updateAccount(name: string, patch: AccountPatch, expectedVersion: number, ctx: MutationContext): Promise<Account>;
  deleteAccount(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void>;
  /** Sets or rotates the provider token (a new secret version); bumps the account's version. */
  setAccountSecret(name: string, token: string, ctx: MutationContext, expectedVersion?: number): Promise<Account>;
  /** Rewraps every data key not under the current KEK; returns how many were rewrapped. */
  rewrapSecrets(ctx: MutationContext): Promise<number>;

  addCollaborator(account: string, input: NewCollaborator, ctx: MutationContext): Promise<Created<Collaborator>>;
  getCollaborator(account: string, subject: string): Promise<Collaborator | undefined>;
  listCollaborators(account: string, page?: PageRequest): Promise<Page<Collaborator>>;
  updateCollaborator(account: string, subject: string, patch: { readonly role: CollaboratorRole }, expectedVersion: number, ctx: MutationContext): Promise<Collaborator>;
  removeCollaborator(account: string, subject: string, ctx: MutationContext, expectedVersion?: number): Promise<void>;

  createModel(account: string, input: NewModel, ctx: MutationContext): Promise<Created<Model>>;
  getModel(account: string, modelId: string): Promise<Model | undefined>;
  listModels(filter?: ModelFilter, page?: PageRequest): Promise<Page<Model>>;
  updateModel(account: string, modelId: string, patch: ModelPatch, expectedVersion: number, ctx: MutationContext): Promise<Model>;
  deleteModel(account: string, modelId: string, ctx: MutationContext, expectedVersion?: number): Promise<void>;

  createTeam(input: NewTeam, ctx: MutationContext): Promise<Created<Team>>;
  getTeam(name: string): Promise<Team | undefined>;
  listTeams(page?: PageRequest): Promise<Page<Team>>;
  updateTeam(name: string, patch: TeamPatch, expectedVersion: number, ctx: MutationContext): Promise<Team>;
  deleteTeam(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void>;
  addTeamMember(team: string, member: string, ctx: MutationContext): Promise<Created<TeamMember>>;
  listTeamMembers(team: string, page?: PageRequest): Promise<Page<TeamMember>>;
  removeTeamMember(team: string, member: string, ctx: MutationContext): Promise<void>;

  createServiceAccount(input: NewServiceAccount, ctx: MutationContext): Promise<Created<ServiceAccount>>;
  getServiceAccount(name: string): Promise<ServiceAccount | undefined>;
  listServiceAccounts(page?: PageRequest): Promise<Page<ServiceAccount>>;
  updateServiceAccount(name: string, patch: ServiceAccountPatch, expectedVersion: number, ctx: MutationContext): Promise<ServiceAccount>;
  /** Deletes the service account, its keys, and the collaborator entries and team memberships of `service:<name>`. */
  deleteServiceAccount(name: string, ctx: MutationContext, expectedVersion?: number): Promise<void>;
  /** Mints a key; not idempotent (a retry mints another — the plaintext cannot be shown twice). */
  createServiceKey(serviceAccount: string, input: NewServiceKey, ctx: MutationContext): Promise<IssuedServiceKey>;
  /** Mints a replacement; the old key stays valid for `graceSeconds`. */
  rotateServiceKey(serviceAccount: string, keyId: string, input: RotateServiceKey, ctx: MutationContext): Promise<IssuedServiceKey>;
  revokeServiceKey(serviceAccount: string, keyId: string, ctx: MutationContext): Promise<ServiceKey>;
  listServiceKeys(serviceAccount: string, page?: PageRequest): Promise<Page<ServiceKey>>;
  /** Looks a presented key up by its SHA-256 (hashServiceKey); undefined when unknown. */
  findServiceKeyByHash(hash: string): Promise<ServiceKeyMatch | undefined>;

  listAuditEvents(filter?: AuditFilter, page?: PageRequest): Promise<Page<AuditEvent>>;
  /**
   * Runs `fn` with a store whose calls all share one transaction: their changes commit as one
   * revision (actor `ctx.actor`), or none of them when `fn` throws (PUT /apply, its dry run).
   */
  atomically<T>(ctx: MutationContext, fn: (tx: ControlStore) => Promise<T>): Promise<T>;
  currentRevision(): Promise<number>;
  loadConfiguration(): Promise<ControlConfiguration>;
}
