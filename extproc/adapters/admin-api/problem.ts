/**
 * RFC 9457 problem details: every refusal of the admin API is `application/problem+json`
 * `{type, title, status, detail, field?}`, where `field` is the wire path of the offending input
 * (`price.per_1k_chars`, `subject`) or the header (`If-Match`). Only the typed store errors and
 * the API's own refusals reach callers; anything else is a generic 500.
 */
import type { z } from 'zod';
import {
  ControlError,
  DuplicateError,
  InvalidCursorError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  VersionConflictError,
} from '../../core/control/errors.ts';

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly field?: string;
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** `type` is a stable URN per reason, so clients switch on it rather than on prose. */
export function problem(status: number, code: string, detail: string, field?: string): Problem {
  return { type: `urn:voicegate:problem:${code}`, title: TITLES[status] ?? 'Error', status, detail, ...(field !== undefined ? { field } : {}) };
}

/** Raised by handlers and middleware; the app's error handler answers it as is. */
export class ProblemError extends Error {
  override readonly name = 'ProblemError';
  constructor(readonly problem: Problem, readonly headers: Readonly<Record<string, string>> = {}) {
    super(problem.detail);
  }
}

export function fail(status: number, code: string, detail: string, field?: string): never {
  throw new ProblemError(problem(status, code, detail, field));
}

// Store fields are camelCase; the wire is snake_case like the YAML document.
const FIELD_WORDS: Record<string, string> = { perThousandChars: 'per_1k_chars' };

/** `price.perThousandChars` → `price.per_1k_chars`, `concurrencyUnits` → `concurrency_units`. */
export function wireField(path: string): string {
  return path
    .split('.')
    .map((part) => FIELD_WORDS[part] ?? part.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))
    .join('.');
}

/** The first zod issue as a problem: its path (plus the unknown key, for strict objects). */
export function zodProblem(error: z.ZodError, prefix = ''): Problem {
  const issue = error.issues[0];
  if (!issue) return problem(400, 'invalid_input', 'invalid input');
  const path = issue.path.map(String);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    path.push(issue.keys[0] ?? '');
    message = 'is not a known field';
  }
  const field = [prefix, ...path].filter(Boolean).join('.');
  return problem(400, 'invalid_input', field ? `${field}: ${message}` : message, field);
}

/** Store errors to problems; undefined for anything that is not a typed, expected failure. */
export function storeProblem(err: unknown): Problem | undefined {
  if (!(err instanceof ControlError)) return undefined;
  if (err instanceof NotFoundError) return problem(404, err.code, err.message);
  if (err instanceof VersionConflictError) return problem(412, err.code, `${err.message}; read it again and retry with its ETag`, 'If-Match');
  if (err instanceof DuplicateError) return problem(409, err.code, wireMessage(err.message), wireField(err.field));
  if (err instanceof InvalidStateError) return problem(409, err.code, err.message);
  if (err instanceof InvalidInputError) return problem(400, err.code, wireMessage(err.message), wireField(err.field));
  if (err instanceof InvalidCursorError) return problem(400, err.code, err.message, 'cursor');
  return undefined;
}

function wireMessage(message: string): string {
  const colon = message.indexOf(':');
  return colon > 0 && !message.slice(0, colon).includes(' ') ? `${wireField(message.slice(0, colon))}${message.slice(colon)}` : message;
}
