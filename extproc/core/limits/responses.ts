/**
 * What a refused caller receives. REST, SSE and WebSocket upgrades get 429 with `Retry-After`
 * (RFC 9110 §10.2.3, whole seconds) — the status Smallest answers over its own units, which its
 * SDKs and retrying HTTP clients already treat as "back off" — and voicegate's JSON error body,
 * with the limit named. A synthesis refused on an open TTS socket gets the provider's error-frame
 * shape (`status: "error"`, `message` and `error` both set) and the socket stays open, as the
 * provider's own over-limit frame leaves it.
 */
import type { DenyCode } from '../decision/denials.ts';
import type { LocalResponse } from '../exchange/responses.ts';
import type { LimitScope, Refusal } from './ledger.ts';

export const LIMIT_CODES = {
  user: 'user_limit_exceeded',
  team: 'team_limit_exceeded',
  account: 'account_limit_exceeded',
} as const satisfies Readonly<Record<LimitScope, DenyCode>>;

export type LimitCode = (typeof LIMIT_CODES)[LimitScope];

const clip = (s: string): string => (s.length > 64 ? `${s.slice(0, 64)}…` : s);

/** Whole seconds, at least 1: `Retry-After: 0` would invite a client to hammer. */
export function retryAfterSeconds(r: Refusal): number {
  return Math.max(1, Math.ceil(r.retryAfterMs / 1000));
}

/** The sentence a client reads; names the principal and the limit, never a credential. */
export function limitMessage(r: Refusal): string {
  const who = `${r.scope} "${clip(r.name)}"`;
  const wait = `try again in ${retryAfterSeconds(r)} s`;
  switch (r.limit) {
    case 'max_units':
      return `${who} has ${r.max} concurrency unit(s) in use, its limit (max_units); ${wait}`;
    case 'max_sessions':
      return `${who} has ${r.max} WebSocket session(s) open, its limit (max_sessions); ${wait}`;
    case 'requests_per_minute':
      return `${who} made ${r.max} request(s) in the last minute, its limit (requests_per_minute); ${wait}`;
    case 'ws_connections':
      return `account "${clip(r.name)}" has all ${r.max} TTS WebSocket connection(s) of this gateway in use (concurrency × ws_per_unit); ${wait}`;
    case 'concurrency':
      return r.max === 0
        ? `account "${clip(r.name)}" is not known to this gateway yet; ${wait}`
        : `account "${clip(r.name)}" has all ${r.max} concurrency unit(s) of this gateway in use; ${wait}`;
  }
}

/** The 429 answer to a REST/SSE request or a WebSocket upgrade. */
export function limitResponse(r: Refusal): LocalResponse {
  const seconds = retryAfterSeconds(r);
  return {
    status: 429,
    headers: { 'content-type': 'application/json', 'retry-after': String(seconds) },
    body: JSON.stringify({
      error: { code: LIMIT_CODES[r.scope], message: limitMessage(r), scope: r.scope, limit: r.limit, retry_after_seconds: seconds },
    }),
  };
}

/**
 * The frame a refused synthesis gets on an open TTS socket: the provider's error shape, plus
 * voicegate's code and, like the provider, the caller's `request_id` echoed as `external_request_id`.
 */
export function limitErrorFrame(r: Refusal, requestId?: string): string {
  const message = limitMessage(r);
  return JSON.stringify({
    status: 'error',
    ...(requestId !== undefined ? { external_request_id: requestId } : {}),
    message,
    error: message,
    code: LIMIT_CODES[r.scope],
    retry_after_seconds: retryAfterSeconds(r),
  });
}
