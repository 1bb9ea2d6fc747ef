/**
 * Responses the edge answers itself: denials (Envoy's `denied_response`), gateway errors with a
 * stable snake_case code, and its own health routes. Pure values; transports write them.
 */
import { denialBody, type Deny } from '../decision/types.ts';
import { CANNOT_DECIDE, statusOf, type GatewayErrorCode } from '../decision/denials.ts';

export interface LocalResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const JSON_TYPE = 'application/json';

export type { GatewayErrorCode };

/** A denial exactly as Envoy writes `denied_response`: its status, its headers, a JSON body. */
export function denyResponse(d: Deny): LocalResponse {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(d.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = JSON_TYPE;
  return { status: d.status, headers, body: denialBody(d) };
}

/** `{"error":{"code","message"}}`, the same shape as a denial; the status is the code's. */
export function gatewayError(code: GatewayErrorCode, message: string): LocalResponse {
  return { status: statusOf(code), headers: { 'content-type': JSON_TYPE }, body: JSON.stringify({ error: { code, message } }) };
}

/** Liveness: the process answers. Never authorized, never proxied. */
export function healthResponse(): LocalResponse {
  return { status: 200, headers: { 'content-type': JSON_TYPE }, body: '{"status":"ok"}' };
}

/** Readiness: a snapshot is loaded, so decisions can be made. */
export function readinessResponse(ready: boolean): LocalResponse {
  return ready
    ? { status: 200, headers: { 'content-type': JSON_TYPE }, body: '{"status":"ready"}' }
    : { status: 503, headers: { 'content-type': JSON_TYPE }, body: JSON.stringify({ status: 'not_ready', reason: CANNOT_DECIDE }) };
}
