/**
 * Structured logs with pino. Redaction is a second line of defence: code never passes secrets to
 * the logger, and these paths are censored should one slip into a logged object anyway.
 */
import { pino, type Logger } from 'pino';

export const REDACT_PATHS = [
  'token',
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'headers["proxy-authorization"]',
  '*.authorization',
  '*.token',
];

export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: opts.name ?? 'voicegate',
    level: opts.level ?? process.env['LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  });
}

export type { Logger };
