/**
 * Per-request scripting for tests (style point 14): the caller tells the simulator how to answer.
 *
 * - `x-sim-status: <100-599>` → a REST route (or a WebSocket upgrade) answers that status with a
 *   JSON body instead of doing its work (429 gets the rate-limit body, others a generic one).
 * - `x-sim-delay-ms: <ms>` → wait that long before the first byte (REST/SSE), before the
 *   scripted status, or before accepting an upgrade. A TTS unit stays held while waiting, which
 *   makes over-limit scenarios easy to build.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { headerValue } from './http-util.ts';

export const RATE_LIMIT_BODY = Object.freeze({ error: 'Rate limit exceeded. Please try again later.' });

export interface Script {
  /** Status to answer instead of the route's own work, when scripted. */
  readonly status: number | undefined;
  readonly delayMs: number;
}

const NONE: Script = Object.freeze({ status: undefined, delayMs: 0 });

/** Reads the scripting headers; unparseable values are ignored. */
export function readScript(headers: IncomingHttpHeaders): Script {
  const s = headerValue(headers['x-sim-status']);
  const d = headerValue(headers['x-sim-delay-ms']);
  if (s === undefined && d === undefined) return NONE;
  const status = s !== undefined && /^[1-5]\d\d$/.test(s.trim()) ? Number(s) : undefined;
  const delay = d !== undefined ? Number(d) : 0;
  return { status, delayMs: Number.isFinite(delay) && delay > 0 ? Math.min(delay, 120_000) : 0 };
}

/** JSON body for a scripted status. */
export function scriptedBody(status: number): Record<string, string> {
  if (status === 429) return { ...RATE_LIMIT_BODY };
  if (status === 503) return { error: 'Service temporarily unavailable' };
  return { error: `Simulated status ${status}` };
}
