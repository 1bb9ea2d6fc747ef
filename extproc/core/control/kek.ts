/**
 * Parsing of `VOICEGATE_KEK`, the key-encryption keys that wrap every data key of the control
 * plane. Two spellings, both with key ids so that rotation only rewraps:
 *
 * - a list `kid2:BASE64,kid1:BASE64` (commas or whitespace between entries), or
 * - a YAML/JSON document `{ keys: [{ id: kid2, key: BASE64 }, { id: kid1, key: BASE64 }] }`.
 *
 * The first key is the current one (new secrets and rewraps use it); the others only unwrap.
 * Each key is 32 random bytes (AES-256), base64 or base64url. Errors never quote key material.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { KekConfigError } from './errors.ts';

/** One key-encryption key. */
export interface Kek {
  readonly id: string;
  readonly key: Uint8Array;
}

const KEK_ID = /^[A-Za-z0-9._-]{1,32}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

const kekEntry = z.strictObject({
  id: z.string().regex(KEK_ID, 'must be 1–32 letters, digits, dot, dash or underscore'),
  key: z.string().regex(BASE64, 'must be base64 or base64url').refine((k) => Buffer.from(k, 'base64').length === 32, {
    message: 'must decode to exactly 32 bytes (AES-256)',
  }),
});

const kekDocument = z.strictObject({
  keys: z
    .array(kekEntry)
    .min(1, 'at least one key')
    .refine((keys) => new Set(keys.map((k) => k.id)).size === keys.length, { message: 'key ids must be unique' }),
});

/**
 * Parses the text of `VOICEGATE_KEK` or of its file into keys, current first.
 *
 * @example
 * parseKekSpec('k2:' + newKekBase64() + ',k1:' + oldKekBase64)  // → [{ id: 'k2', … }, { id: 'k1', … }]
 */
export function parseKekSpec(text: string, source = 'VOICEGATE_KEK'): Kek[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new KekConfigError(`${source} is empty`);
  let candidate: unknown;
  // The list form never contains `{`, `[` or a newline-indented `keys:`; anything else is a document.
  if (/^[^{[\s:]+:[^\s,:]+([\s,]+[^{[\s:]+:[^\s,:]+)*$/.test(trimmed)) {
    candidate = {
      keys: trimmed.split(/[\s,]+/).map((entry) => {
        const at = entry.indexOf(':');
        return { id: entry.slice(0, at), key: entry.slice(at + 1) };
      }),
    };
  } else {
    try {
      candidate = parseYaml(trimmed);
    } catch {
      // The YAML parser's message may quote the offending line, which can hold a key.
      throw new KekConfigError(`${source} is neither "id:base64key,…" nor a YAML/JSON document {keys: [{id, key}]}`);
    }
  }
  const parsed = kekDocument.safeParse(candidate);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'keys'}: ${i.message}`);
    throw new KekConfigError(`${source} is invalid: ${issues.join('; ')}`);
  }
  return parsed.data.keys.map((k) => ({ id: k.id, key: new Uint8Array(Buffer.from(k.key, 'base64')) }));
}
