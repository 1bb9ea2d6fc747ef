/**
 * Validation of what callers hand the store. The admin API validates its own wire shapes first;
 * the store checks again so that no caller (CLI, apply, tests) can store what a snapshot could
 * not compile. Names follow the YAML config's rules (schema.ts), so a stored configuration can
 * be exported as a document and re-applied.
 */
import { z } from 'zod';
import { InvalidInputError } from './errors.ts';
import { MAX_SECRET_BYTES } from './envelope.ts';

/** Same pattern as `name` in extproc/core/config/schema.ts. */
export const resourceName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/i, 'must be 1–63 letters, digits, dot, dash or underscore');

/** Same pattern as `decimal` in extproc/core/config/schema.ts. */
const decimal = z.string().regex(/^\d+(\.\d+)?$/, 'must be a non-negative decimal written as a string, e.g. "0.0195"');

/** A user or team name as the identity layer yields it (`alice`, `corp:alice`): printable, no spaces. */
const principal = z.string().regex(/^[\x21-\x7e]{1,200}$/, 'must be 1–200 printable characters without spaces');

export const subject = z
  .string()
  .regex(/^(user|team|service):[\x21-\x7e]{1,200}$/, 'must be user:<name>, team:<name> or service:<name>');

export const collaboratorRole = z.enum(['manager', 'user']);

// Provider tokens are printable ASCII; a trailing newline or space is a paste error that would
// otherwise be injected into every upstream request.
const token = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_SECRET_BYTES, `must be at most ${MAX_SECRET_BYTES} characters`)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces or line breaks');

const baseUrl = z.url({ protocol: /^https?$/ }).refine((u) => !new URL(u).username && !new URL(u).password, {
  message: 'must not carry credentials',
});

const price = z.strictObject({
  perThousandChars: decimal.optional(),
  perMinute: decimal.optional(),
  perMinuteStreaming: decimal.optional(),
});

const aliases = z
  .array(resourceName)
  .max(32)
  .refine((a) => new Set(a).size === a.length, { message: 'aliases must be unique' });

const description = z.string().max(1000);
const timestamp = z.iso.datetime({ offset: true });

export const newAccountInput = z.strictObject({
  name: resourceName,
  provider: resourceName.default('smallest'),
  baseUrl: baseUrl.nullable().default(null),
  concurrencyUnits: z.number().int().min(1).max(10_000).default(1),
  wsPerUnit: z.number().int().min(1).max(100).default(5),
  token: token.optional(),
});
export const accountPatchInput = z.strictObject({
  provider: resourceName.optional(),
  baseUrl: baseUrl.nullable().optional(),
  concurrencyUnits: z.number().int().min(1).max(10_000).optional(),
  wsPerUnit: z.number().int().min(1).max(100).optional(),
});
export const tokenInput = token;
export const newCollaboratorInput = z.strictObject({ subject, role: collaboratorRole });
export const collaboratorPatchInput = z.strictObject({ role: collaboratorRole });
/** As `max_session_seconds` in config/schema.ts: pods compile the store's models through it. */
const maxSessionSeconds = z.number().int().min(1).max(604_800);
export const newModelInput = z
  .strictObject({
    modelId: resourceName,
    type: z.enum(['tts', 'stt']),
    aliases: aliases.default([]),
    price: price.default({}),
    maxSessionSeconds: maxSessionSeconds.nullable().default(null),
  })
  .refine((m) => !m.aliases.includes(m.modelId), { message: 'a model is not its own alias', path: ['aliases'] });
export const modelPatchInput = z.strictObject({
  type: z.enum(['tts', 'stt']).optional(),
  aliases: aliases.optional(),
  price: price.optional(),
  maxSessionSeconds: maxSessionSeconds.nullable().optional(),
});
export const newTeamInput = z.strictObject({ name: resourceName, description: description.default('') });
export const teamPatchInput = z.strictObject({ description: description.optional() });
export const memberInput = principal;
export const newServiceAccountInput = z.strictObject({ name: resourceName, description: description.default('') });
export const serviceAccountPatchInput = z.strictObject({ description: description.optional() });
export const newServiceKeyInput = z.strictObject({ expiresAt: timestamp.nullable().default(null) });
export const rotateServiceKeyInput = z.strictObject({
  graceSeconds: z.number().int().min(0).max(30 * 86_400),
  // Absent: the new key inherits the old key's expiry; null: it never expires.
  expiresAt: timestamp.nullable().optional(),
});
export const pageInput = z.strictObject({
  limit: z.number().int().min(1).max(500).default(100),
  cursor: z.string().max(2048).nullable().default(null),
});

/**
 * Parses `input` or throws InvalidInputError naming the first offending field (`price.perMinute`).
 * Zod's messages here never quote the value, so a malformed token is not echoed.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
  throw new InvalidInputError(path, issue.message);
}
