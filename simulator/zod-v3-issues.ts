/**
 * Smallest's API answers validation errors with zod **v3** issue objects (seen on the wire);
 * the repo uses zod v4, whose issues differ. This maps v4 issues to the v3 shapes and messages,
 * keeping the key order of the recorded responses.
 */
import type { z } from 'zod';

export type V3Issue = Record<string, unknown>;

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = input;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** zod v3's `getParsedType` names. */
function typeName(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isNaN(v) ? 'nan' : Number.isInteger(v) ? 'integer' : 'float';
  return typeof v;
}

function joinValues(values: readonly unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? `'${v}'` : String(v))).join(' | ');
}

function sizeMessage(kind: 'small' | 'big', origin: string, limit: number | bigint): string {
  const n = String(limit);
  if (origin === 'string') return kind === 'small' ? `String must contain at least ${n} character(s)` : `String must contain at most ${n} character(s)`;
  if (origin === 'array') return kind === 'small' ? `Array must contain at least ${n} element(s)` : `Array must contain at most ${n} element(s)`;
  return kind === 'small' ? `Number must be greater than or equal to ${n}` : `Number must be less than or equal to ${n}`;
}

/** Converts one zod v4 issue (with the parsed input) to the v3 issue Smallest returns. */
export function toV3Issue(issue: z.core.$ZodIssue, input: unknown): V3Issue {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
  const received = valueAt(input, issue.path);
  switch (issue.code) {
    case 'invalid_type': {
      const r = typeName(received);
      return { code: 'invalid_type', expected: issue.expected, received: r, path, message: r === 'undefined' ? 'Required' : `Expected ${issue.expected}, received ${r}` };
    }
    case 'invalid_value':
      return {
        received,
        code: 'invalid_enum_value',
        options: issue.values,
        path,
        message: `Invalid enum value. Expected ${joinValues(issue.values)}, received '${String(received)}'`,
      };
    case 'too_small':
    case 'too_big': {
      const small = issue.code === 'too_small';
      const limit = small ? issue.minimum : issue.maximum;
      const type = issue.origin === 'string' || issue.origin === 'array' ? issue.origin : 'number';
      return {
        code: issue.code,
        [small ? 'minimum' : 'maximum']: typeof limit === 'bigint' ? Number(limit) : limit,
        type,
        inclusive: issue.inclusive ?? true,
        exact: false,
        message: sizeMessage(small ? 'small' : 'big', type, limit),
        path,
      };
    }
    case 'invalid_format':
      return { validation: issue.format === 'regex' ? 'regex' : issue.format, code: 'invalid_string', message: 'Invalid', path };
    case 'custom':
      return { code: 'custom', path, message: issue.message };
    default:
      return { code: 'custom', path, message: issue.message };
  }
}
