/**
 * The compiled configuration every request is decided against.
 *
 * A snapshot is immutable and self-contained: the file source builds one from YAML today, the
 * control plane will publish the same shape over NATS later. A request keeps the snapshot it
 * started with, so a swap never changes a decision half-way.
 */
import type { JWK } from 'jose';

export type ModelType = 'tts' | 'stt';

export interface IssuerConfig {
  /** Exact `iss` claim value. */
  readonly issuer: string;
  /**
   * Qualifies the user, team and role names of this issuer's tokens as `name:value`; absent for
   * the one issuer (at most) whose names stay plain. Entitlements refer to the qualified names.
   */
  readonly name?: string;
  /** Accepted `aud` values (any of them). */
  readonly audiences: readonly string[];
  /** Remote JWKS (fetched once, refetched on unknown kid) — exclusive with `jwks`. */
  readonly jwksUrl?: string;
  /** Inline JWKS (public keys only). */
  readonly jwks?: { readonly keys: readonly JWK[] };
  readonly algorithms: readonly string[];
  readonly userClaim: string;
  readonly teamsClaim: string;
  readonly rolesClaim: string;
  /** Allowed clock skew when checking exp / nbf / iat, seconds. */
  readonly clockToleranceSec: number;
  /**
   * Development signing key (private JWK) used only by `voicegate token`; never used to verify.
   * Undefined in production configs.
   */
  readonly devSigningKey?: JWK;
}

export interface ProviderConfig {
  readonly name: string;
  /** Upstream base URL without trailing slash, e.g. `https://api.smallest.ai`. */
  readonly upstream: string;
}

export interface AccountConfig {
  readonly name: string;
  readonly provider: string;
  /** The provider API key (resolved secret). Never log, never put in a span or an error. */
  readonly token: string;
  readonly users: ReadonlySet<string>;
  readonly teams: ReadonlySet<string>;
  /** Provider concurrency units bought for this key. */
  readonly concurrency: number;
  /** TTS WebSocket connections the provider allows per unit (default 5). */
  readonly wsPerUnit: number;
}

/** Admission limits of one user or team (core/limits); an absent field is no limit. */
export interface PrincipalLimits {
  /** Concurrent units (syntheses in flight plus STT sessions and STT REST requests). */
  readonly maxUnits?: number;
  /** Open WebSockets. */
  readonly maxSessions?: number;
  /** Admissions in any 60 s. */
  readonly requestsPerMinute?: number;
  /** Longest a WebSocket session or SSE stream lasts, ms (enforced by the edge, not the ledger). */
  readonly maxSessionMs?: number;
  /** Teams only: a bounded wait instead of an immediate 429 over a concurrency limit (core/limits/waiters.ts). */
  readonly wait?: { readonly maxMs: number; readonly maxWaiters: number };
}

/** Limits by user and by team name, as tokens carry the names (qualified beside named issuers). */
export interface PrincipalLimitTable {
  readonly users: ReadonlyMap<string, PrincipalLimits>;
  readonly teams: ReadonlyMap<string, PrincipalLimits>;
}

export interface Price {
  /** USD per 1,000 input characters (TTS), as a decimal string. */
  readonly perThousandChars?: string;
  /** USD per audio minute (STT), as a decimal string; REST and streaming may differ. */
  readonly perMinute?: string;
  readonly perMinuteStreaming?: string;
}

/** One account serving a model: what may differ between the accounts of one model. */
export interface ModelAccount {
  readonly account: string;
  /** What the provider charges this account; the span bills the account that served the exchange. */
  readonly price: Price;
  /** Longest a WebSocket session or SSE stream on this model and account lasts, ms; absent: only the edge's ceiling. */
  readonly maxSessionMs?: number;
}

export interface ModelConfig {
  /** Public model id as it appears in provider paths, e.g. `lightning-v3.1`, `pulse`. */
  readonly name: string;
  readonly provider: string;
  readonly type: ModelType;
  /**
   * The accounts serving it, in configuration order, never empty: a caller may use any of them
   * it is a collaborator of; the edge admits on the one with most spare units (core/limits/choice.ts).
   */
  readonly accounts: readonly ModelAccount[];
  /** Other spellings that resolve to this model (e.g. body `model: lightning_v3.1`). */
  readonly aliases: readonly string[];
}

/** The entry of `account` on `model`; undefined when that account does not serve it. */
export function modelAccount(model: ModelConfig, account: string | undefined): ModelAccount | undefined {
  return account === undefined ? undefined : model.accounts.find((a) => a.account === account);
}

/**
 * Which browser origins may call the gateway (the CORS protocol of the Fetch standard, and the
 * `Origin` check of WebSocket upgrades, RFC 6455 §10.2). Absent or empty: no browser origin may.
 */
export interface CorsPolicy {
  /** Serialised origins (`https://app.example.com`), compared exactly; `'*'` admits every origin. */
  readonly allowedOrigins: ReadonlySet<string> | '*';
  /** Upper-case methods answered in `Access-Control-Allow-Methods`. */
  readonly allowedMethods: readonly string[];
  /** Lower-case request header names answered in `Access-Control-Allow-Headers`. */
  readonly allowedHeaders: readonly string[];
  /** Lower-case response header names a page may read (`Access-Control-Expose-Headers`). */
  readonly exposedHeaders: readonly string[];
  /** How long a browser may cache a preflight answer (`Access-Control-Max-Age`), seconds. */
  readonly maxAgeSeconds: number;
}

export interface Snapshot {
  /** Monotonic version; a source never swaps in an older one. */
  readonly version: number;
  /** Where it came from, for logs (`file:/path`, `nats:kv/…`). */
  readonly origin: string;
  readonly issuers: readonly IssuerConfig[];
  readonly providers: ReadonlyMap<string, ProviderConfig>;
  readonly accounts: ReadonlyMap<string, AccountConfig>;
  /** Keyed by provider, then by every name and alias of the model. */
  readonly models: ReadonlyMap<string, ReadonlyMap<string, ModelConfig>>;
  /** Model used on unified routes when neither body nor query name one, per provider and type. */
  readonly defaultModels: ReadonlyMap<string, Readonly<Partial<Record<ModelType, string>>>>;
  /** Largest request body (bytes) the decision reads on TTS JSON routes. */
  readonly maxDecisionBodyBytes: number;
  /** Browser origins allowed to call; undefined allows none (requests carrying `Origin` are refused). */
  readonly cors?: CorsPolicy;
  /** Per-user and per-team admission limits; undefined limits no one (accounts still hold their units). */
  readonly principalLimits?: PrincipalLimitTable;
  /**
   * Gateway-issued service keys (`vg_…`) by the SHA-256 hex of the key, from the control plane.
   * A request carrying one is authorized as the user `service:<name>`. Absent: no service key is valid.
   */
  readonly serviceKeys?: ReadonlyMap<string, ServiceKeyEntry>;
  /**
   * Team memberships kept by the control plane, by member (a user name as the identity layer
   * produces it, or `service:<name>`); combined with the teams a token carries.
   */
  readonly teamMembers?: ReadonlyMap<string, readonly string[]>;
}

/** One valid service key as pods hold it: only the hash is known, never the key. */
export interface ServiceKeyEntry {
  readonly subject: `service:${string}`;
  /** Last instant (ms since epoch) the key is valid: its expiry or the end of its rotation grace; null: no end. */
  readonly notAfterMs: number | null;
}

/** Where snapshots come from: a file today, NATS KV later. Consumers only read `current()`. */
export interface SnapshotSource {
  /** The snapshot in force, or undefined when none has been loaded (requests then get 503). */
  current(): Snapshot | undefined;
  /** Called after every swap. Returns an unsubscribe function. */
  onSwap(listener: (next: Snapshot) => void): () => void;
  close(): Promise<void>;
}

/** A source holding one snapshot that can be replaced in place (tests, file reload, NATS). */
export class StaticSnapshotSource implements SnapshotSource {
  #current: Snapshot | undefined;
  readonly #listeners = new Set<(next: Snapshot) => void>();

  constructor(initial?: Snapshot) {
    this.#current = initial;
  }

  current(): Snapshot | undefined {
    return this.#current;
  }

  /** Swaps in `next` unless it is older than the snapshot in force; returns whether it swapped. */
  swap(next: Snapshot): boolean {
    if (this.#current && next.version < this.#current.version) return false;
    this.#current = next;
    for (const l of this.#listeners) l(next);
    return true;
  }

  onSwap(listener: (next: Snapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}
