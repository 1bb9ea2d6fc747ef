/**
 * The registry of the edge's long-lived exchanges — WebSocket sessions and SSE streams — that
 * mid-session enforcement governs (core/decision/recheck.ts). Each transport registers a session
 * once it is open, with what it was admitted with and how to end it; the registry decides it again
 * on every snapshot swap and arms one timer for its earliest time bound (token expiry, maximum
 * duration). Ending is the transport's: a WebSocket gets 1008, an SSE stream its last event.
 *
 * One registry per edge, shared by both transports, so one `recheck` per swap covers them all.
 */
import type { Snapshot } from '../../core/config/snapshot.ts';
import {
  recheckSession,
  sessionDeadline,
  sessionToken,
  type AdmittedSession,
  type SessionBounds,
  type SessionEndReason,
} from '../../core/decision/recheck.ts';
import type { DecisionMetadata } from '../../core/decision/types.ts';

/** Longest a session lasts, however active (`--max-session`); the provider documents no limit of its own. */
export const DEFAULT_MAX_SESSION_MS = 3_600_000;
/** How long a session may outlive its token beyond the issuer's clock skew (`--session-token-grace`). */
export const DEFAULT_SESSION_TOKEN_GRACE_MS = 0;
/** setTimeout's largest delay (2^31-1 ms, about 24.8 days); later deadlines re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What a session was admitted with, read before it opened. */
export interface SessionAdmission extends Omit<AdmittedSession, 'openedAtMs'> {
  /** The exchange's snapshot: the one its decision used (and the first deadline's clock skew). */
  readonly snapshot: Snapshot;
}

/**
 * Ends a session on policy; true when this call ended it (false when it was already ending, which
 * the registry then does not count).
 */
export type EndSession = (reason: SessionEndReason, message: string) => boolean;

/** A registered session; `release` once it has closed for good (idempotent). */
export interface GovernedSession {
  readonly openedAtMs: number;
  release(): void;
}

export interface SessionRegistry {
  /**
   * Registers a session that has just opened. When a swap happened since its decision, it is
   * decided against that newer snapshot at once (the caller may already have been revoked).
   */
  open(admission: SessionAdmission, end: EndSession): GovernedSession;
  /** Decides every open session again against `next` (call on each swap); how many it ended. */
  recheck(next: Snapshot): number;
  /** Sessions open now. */
  readonly size: number;
}

/**
 * What a session was admitted with, from its request: the allow's metadata, the `iss`/`exp` of the
 * token it carried (header or `?token=`) and a browser's `Origin`.
 */
export function admissionOf(
  metadata: DecisionMetadata,
  headers: { readonly authorization?: string | undefined; readonly origin?: string | string[] | undefined },
  pathWithQuery: string,
  snapshot: Snapshot,
): SessionAdmission {
  const auth = headers.authorization;
  return {
    metadata,
    token: sessionToken(auth !== undefined ? { authorization: auth } : {}, pathWithQuery, snapshot.issuers),
    ...(typeof headers.origin === 'string' ? { origin: headers.origin } : {}),
    snapshot,
  };
}

interface Entry {
  /** Decides the session against `next`; true when that ended it. */
  readonly recheck: (next: Snapshot) => boolean;
}

export function createSessionRegistry(opts: { readonly maxSessionMs?: number; readonly sessionTokenGraceMs?: number } = {}): SessionRegistry {
  const bounds: SessionBounds = {
    maxSessionMs: opts.maxSessionMs ?? DEFAULT_MAX_SESSION_MS,
    tokenGraceMs: opts.sessionTokenGraceMs ?? DEFAULT_SESSION_TOKEN_GRACE_MS,
  };
  const live = new Set<Entry>();
  /** The snapshot of the last re-check, for sessions decided before it that open after it. */
  let latest: Snapshot | undefined;

  return {
    open(admission, end) {
      const opened: AdmittedSession = {
        metadata: admission.metadata,
        token: admission.token,
        openedAtMs: Date.now(),
        ...(admission.origin !== undefined ? { origin: admission.origin } : {}),
      };
      let timer: NodeJS.Timeout | undefined;
      let released = false;
      const endOnPolicy = (reason: SessionEndReason, message: string): boolean => {
        if (released) return false;
        const ended = end(reason, message);
        if (ended) clearTimeout(timer);
        return ended;
      };
      /** One timer for the earliest time bound; activity never moves it. */
      const arm = (snapshot: Snapshot): void => {
        clearTimeout(timer);
        const d = sessionDeadline(opened, snapshot, bounds);
        if (!d || released) return;
        const wait = Math.min(Math.max(0, d.atMs - Date.now()), MAX_TIMER_MS);
        timer = setTimeout(() => void (Date.now() >= d.atMs ? endOnPolicy(d.reason, d.message) : arm(snapshot)), wait);
        // The sockets keep the process alive; this bound alone must not.
        timer.unref();
      };
      const entry: Entry = {
        recheck(next) {
          const verdict = recheckSession(opened, next);
          if (verdict.kind === 'end') return endOnPolicy(verdict.reason, verdict.message);
          // The new snapshot's bounds (clock skew, configured maximum durations) may differ.
          arm(next);
          return false;
        },
      };
      live.add(entry);
      if (latest !== undefined && latest !== admission.snapshot) entry.recheck(latest);
      else arm(admission.snapshot);
      return {
        openedAtMs: opened.openedAtMs,
        release() {
          released = true;
          clearTimeout(timer);
          live.delete(entry);
        },
      };
    },
    recheck(next) {
      latest = next;
      let ended = 0;
      for (const e of [...live]) if (e.recheck(next)) ended++;
      return ended;
    },
    get size() {
      return live.size;
    },
  };
}
