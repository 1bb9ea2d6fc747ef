/**
 * Mid-session enforcement. A WebSocket session is decided once, at its upgrade, but it can stay
 * open for hours while the configuration changes under it and its token runs out; activity resets
 * the idle bound, so nothing else would ever end it. So an open session is decided again against
 * every new snapshot, with the identity it was admitted with, and bounded in time by its token's
 * expiry and by a maximum lifetime. No I/O, no clock: the caller passes the time.
 *
 * The re-check is the entitlement part of the decision, for the session's own model: the model the
 * session was opened for (by canonical name; an alias that now resolves to the same model counts)
 * must still exist with the same type, its provider must still be configured, it must still be
 * served by the same account, the caller (user, or one of their teams) must still be a collaborator
 * of that account, the token's issuer must still be trusted and a browser `Origin`, when the upgrade
 * carried one, still allowed. Path and query checks are not repeated: they depend on nothing a
 * snapshot changes.
 *
 * A model that moved to another account ends the session even when the caller may use the new one:
 * the upstream leg was opened with the old account's key and counts against its units, which is
 * exactly what the operator just took away (a compromised or retired key, a team moved to its own
 * account). The caller reconnects and is admitted on the new account. A key rotated within the same
 * account does not end sessions: the provider decides whether the old key still holds.
 */
import { decodeJwt } from 'jose';
import { modelAccount, type IssuerConfig, type ModelAccount, type Snapshot } from '../config/snapshot.ts';
import { QUALIFIER_SEPARATOR } from '../identity/identity.ts';
import { findToken } from '../identity/token.ts';
import { hashServiceKey, isServiceKeyShaped } from '../config/service-key.ts';
import { originAllowed } from './cors.ts';
import type { DecisionMetadata } from './types.ts';

/** Why the gateway ended a session; the span's `error`. */
export type SessionEndReason = 'entitlement_revoked' | 'account_changed' | 'token_expired' | 'max_session_duration';

/** Claims of the token a session was admitted with, read after the authorizer verified it. */
export interface SessionToken {
  /** `iss`. */
  readonly issuer?: string;
  /** `exp`, ms since epoch. */
  readonly expiresAtMs?: number;
  /**
   * When the session was admitted with a `vg_` service key: its SHA-256 (never the key). The key's
   * validity is then read from each snapshot, so a revoked key ends the session at the next
   * re-check and a rotation's grace end is its deadline.
   */
  readonly serviceKey?: string;
  /**
   * The teams the token's own claim carries, qualified as the verifier qualifies them — without
   * the control plane's: a re-check adds those afresh from each snapshot, so a user removed from
   * a store team loses what only that team gave. Absent when unknown (no readable JWT of a known
   * issuer): the teams the session was admitted with then stand.
   */
  readonly teams?: readonly string[];
}

/** What a session was admitted with. */
export interface AdmittedSession {
  /** The allow's metadata: user, teams, provider, model, model type, account. */
  readonly metadata: DecisionMetadata;
  readonly token: SessionToken;
  /** The upgrade's `Origin` header, when a browser sent one. */
  readonly origin?: string;
  /** When the session opened (ms since epoch). */
  readonly openedAtMs: number;
}

/** Time bounds of every session. */
export interface SessionBounds {
  /** Longest a session may last, however active; 0 or less: no bound. */
  readonly maxSessionMs: number;
  /** How long a session may outlive its token (beyond the issuer's clock skew). */
  readonly tokenGraceMs: number;
}

export type SessionVerdict =
  | { readonly kind: 'keep' }
  | { readonly kind: 'end'; readonly reason: SessionEndReason; readonly message: string };

/** When and why a session ends if nothing else ends it first. */
export interface SessionDeadline {
  readonly atMs: number;
  readonly reason: Extract<SessionEndReason, 'token_expired' | 'max_session_duration'>;
  readonly message: string;
}

const SERVICE_KEY_ENDED = 'the service key this session was opened with was revoked or has expired; reconnect with a valid key';

const KEEP: SessionVerdict = Object.freeze({ kind: 'keep' });

const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

function end(reason: SessionEndReason, message: string): SessionVerdict {
  return { kind: 'end', reason, message };
}

/**
 * Decides an open session again against `snapshot`.
 *
 * @example
 * recheckSession({ metadata: { user: 'bob', provider: 'smallest', model: 'pulse', model_type: 'stt', account: 'smallest-stt' }, token: {}, openedAtMs: 0 }, next);
 * // { kind: 'end', reason: 'entitlement_revoked', message: 'user "bob" may no longer use model "pulse" …' } once bob left the account
 */
export function recheckSession(session: AdmittedSession, snapshot: Snapshot): SessionVerdict {
  const md = session.metadata;
  const user = md.user ?? '';
  const modelName = md.model ?? '';
  // Fail closed: a session whose allow names no model or account cannot be shown to be entitled.
  if (!md.provider || !snapshot.providers.has(md.provider)) {
    return end('entitlement_revoked', `provider "${clip(md.provider ?? '')}" is no longer served by this gateway`);
  }
  const model = snapshot.models.get(md.provider)?.get(modelName);
  if (!model || (md.model_type !== undefined && model.type !== md.model_type)) {
    return end('entitlement_revoked', `model "${clip(modelName)}" is no longer available through this gateway`);
  }
  if (session.token.serviceKey !== undefined && !snapshot.serviceKeys?.has(session.token.serviceKey)) {
    // Like a token past its expiry: the credential the session was admitted with is gone.
    return end('token_expired', SERVICE_KEY_ENDED);
  }
  if (session.token.issuer !== undefined && !snapshot.issuers.some((i) => i.issuer === session.token.issuer)) {
    return end('entitlement_revoked', 'the issuer of this session\'s token is no longer trusted');
  }
  if (session.origin !== undefined && !originAllowed(session.origin, snapshot.cors)) {
    return end('entitlement_revoked', `origin "${clip(session.origin)}" is no longer allowed`);
  }
  // The session runs on the key of the account it was admitted on: it goes on only while that
  // account still serves the model and still lets the caller in.
  const known = model.accounts.flatMap((m) => snapshot.accounts.get(m.account) ?? []);
  if (known.length === 0) return end('entitlement_revoked', `model "${model.name}" has no provider account any more`);
  // The caller's teams as the authorizer would combine them now: the credential's own (a service
  // key has none; a token's claim, as admitted) plus the store's, read afresh, so one removed from
  // a store team loses that team's accounts (identity/store-teams.ts).
  const admitted = (md.teams ?? '').split(',').filter((t) => t !== '');
  const own =
    session.token.serviceKey !== undefined ? [] : session.token.teams !== undefined ? session.token.teams.filter((t) => admitted.includes(t)) : admitted;
  const teams = [...own, ...(snapshot.teamMembers?.get(user) ?? [])];
  const lets = (a: (typeof known)[number]) => a.users.has(user) || teams.some((t) => a.teams.has(t));
  if (!known.some(lets)) {
    return end('entitlement_revoked', `user "${clip(user)}" may no longer use model "${model.name}"`);
  }
  const account = known.find((a) => a.name === md.account);
  if (!account || !lets(account)) {
    return end('account_changed', `model "${model.name}" is now served by another account; open a new session`);
  }
  return KEEP;
}

/**
 * The moment the session must end on time alone: its token stops being accepted (`exp` plus the
 * issuer's clock skew, as the verifier allows) plus the grace, or its maximum lifetime runs out
 * (the smallest of the edge's ceiling and the configured bounds, {@link configuredMaxSession}),
 * whichever comes first. Undefined when neither applies (no `exp` known and no lifetime bound).
 *
 * @example
 * sessionDeadline({ metadata: {}, token: { expiresAtMs: 60_000 }, openedAtMs: 0 }, snapshot, { maxSessionMs: 3_600_000, tokenGraceMs: 0 });
 * // { atMs: 60_000 + skew, reason: 'token_expired', … }
 */
export function sessionDeadline(session: AdmittedSession, snapshot: Snapshot | undefined, bounds: SessionBounds): SessionDeadline | undefined {
  const candidates: SessionDeadline[] = [];
  const key = session.token.serviceKey !== undefined ? snapshot?.serviceKeys?.get(session.token.serviceKey) : undefined;
  if (key && key.notAfterMs !== null) {
    candidates.push({ atMs: key.notAfterMs + Math.max(0, bounds.tokenGraceMs), reason: 'token_expired', message: SERVICE_KEY_ENDED });
  }
  if (session.token.expiresAtMs !== undefined) {
    const issuer = snapshot?.issuers.find((i) => i.issuer === session.token.issuer);
    const skewMs = (issuer?.clockToleranceSec ?? 0) * 1000;
    candidates.push({
      atMs: session.token.expiresAtMs + skewMs + Math.max(0, bounds.tokenGraceMs),
      reason: 'token_expired',
      message: 'the token this session was opened with has expired; reconnect with a fresh token',
    });
  }
  const ceiling = bounds.maxSessionMs > 0 && Number.isFinite(bounds.maxSessionMs) ? bounds.maxSessionMs : undefined;
  const configured = snapshot ? configuredMaxSession(session.metadata, snapshot) : undefined;
  // The smallest bound wins; the edge's own is the ceiling whatever the configuration says.
  const bound = configured && (ceiling === undefined || configured.ms < ceiling) ? configured : ceiling !== undefined ? { ms: ceiling, of: "the gateway's" } : undefined;
  if (bound) {
    candidates.push({
      atMs: session.openedAtMs + bound.ms,
      reason: 'max_session_duration',
      message: `the session reached ${bound.of} maximum duration (${Math.round(bound.ms / 1000)} s); reconnect to continue`,
    });
  }
  let first: SessionDeadline | undefined;
  for (const c of candidates) if (!first || c.atMs < first.atMs) first = c;
  return first;
}

/**
 * The smallest `max_session_seconds` the configuration sets for this session — on its model, its
 * user, any of its teams (`limits.users` / `limits.teams`) — and whose it is, for the message.
 * Read from the snapshot each re-check, so a reload that shortens a bound applies to open sessions:
 * one already past it ends at once.
 *
 * @example
 * configuredMaxSession({ provider: 'smallest', model: 'pulse', teams: 'voice' }, snapshot);
 * // { ms: 600_000, of: 'team "voice"\'s' } when pulse allows 30 min and team voice 10 min
 */
export function configuredMaxSession(md: DecisionMetadata, snapshot: Snapshot): { readonly ms: number; readonly of: string } | undefined {
  let best: { ms: number; of: string } | undefined;
  const consider = (ms: number | undefined, of: string) => {
    if (ms !== undefined && ms > 0 && (!best || ms < best.ms)) best = { ms, of };
  };
  const model = snapshot.models.get(md.provider ?? '')?.get(md.model ?? '');
  // The bound of the account the session runs on; without one named, the longest any account allows.
  if (model) {
    const entry = modelAccount(model, md.account);
    const ms = entry ? entry.maxSessionMs : longestBound(model.accounts);
    consider(ms, `model "${model.name}"'s`);
  }
  const limits = snapshot.principalLimits;
  if (limits && md.user !== undefined && md.user !== '') consider(limits.users.get(md.user)?.maxSessionMs, `user "${clip(md.user)}"'s`);
  for (const team of (md.teams ?? '').split(',')) {
    if (limits && team !== '') consider(limits.teams.get(team)?.maxSessionMs, `team "${clip(team)}"'s`);
  }
  return best;
}

/**
 * The `iss` and `exp` of the token an upgrade carried (header or `?token=`), read without
 * verification: the authorizer verified this very token before the session was allowed, and these
 * claims are only ever used to end a session sooner, never to admit one. With `issuers` (those of
 * the snapshot that admitted it), also the teams its claim carries: a re-check keeps only those of
 * them the session was admitted with. A `vg_` service key gives its hash instead (its expiry is the
 * snapshot's, {@link sessionDeadline}). Empty when no JWT is readable (an authorizer that admits
 * other credentials); such a session is bounded by its lifetime alone.
 */
export function sessionToken(headers: Readonly<Record<string, string>>, pathWithQuery: string, issuers?: readonly IssuerConfig[]): SessionToken {
  const lookup = findToken(headers, pathWithQuery);
  if (!lookup.found) return {};
  if (isServiceKeyShaped(lookup.token)) return { serviceKey: hashServiceKey(lookup.token) };
  try {
    const claims = decodeJwt(lookup.token);
    const issuer = issuers?.find((i) => i.issuer === claims.iss);
    return {
      ...(typeof claims.iss === 'string' ? { issuer: claims.iss } : {}),
      ...(typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? { expiresAtMs: claims.exp * 1000 } : {}),
      ...(issuer ? { teams: claimTeams(claims[issuer.teamsClaim], issuer) } : {}),
    };
  } catch {
    return {};
  }
}

/** A teams claim qualified as identity.ts qualifies it; absent is none, as the verifier reads it. */
function claimTeams(claim: unknown, issuer: IssuerConfig): string[] {
  const names = Array.isArray(claim) ? claim.filter((t): t is string => typeof t === 'string' && t !== '') : [];
  return names.map((t) => (issuer.name === undefined ? t : `${issuer.name}${QUALIFIER_SEPARATOR}${t}`));
}

/**
 * Close code of every session the gateway ends on policy — revoked, expired or over its lifetime:
 * 1008 (RFC 6455 §7.4.1, policy violation), as for a refused frame and as Pulse itself closes a
 * socket over its concurrency cap. Not 1000: a normal closure would tell an STT client its stream
 * ended complete; not 1001, which the gateway keeps for shutdown and idleness, where reconnecting
 * at once is the right move. The reason text says which.
 */
export const SESSION_ENDED_CLOSE_CODE = 1008;

const CLOSE_REASONS: Readonly<Record<SessionEndReason, string>> = {
  entitlement_revoked: 'entitlement revoked',
  account_changed: 'model moved to another account',
  token_expired: 'token expired',
  max_session_duration: 'maximum session duration reached',
};

/** The close frame's reason (well under RFC 6455's 123 bytes). */
export function sessionCloseReason(reason: SessionEndReason): string {
  return CLOSE_REASONS[reason];
}

/** The longest session any of these accounts allows; undefined when one sets no bound (the edge's ceiling). */
function longestBound(accounts: readonly ModelAccount[]): number | undefined {
  let longest = 0;
  for (const a of accounts) {
    if (a.maxSessionMs === undefined) return undefined;
    longest = Math.max(longest, a.maxSessionMs);
  }
  return longest > 0 ? longest : undefined;
}
