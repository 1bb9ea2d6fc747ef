/**
 * Resolves `env:VAR` and `file:PATH` references. Values are returned, never logged; errors name
 * the reference, never the value.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { SecretResult } from '../../core/config/compile.ts';


export async function resolveSecret(
  ref: string,
  baseDir: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<SecretResult> {
  if (ref.startsWith('env:')) {
    const key = ref.slice(4);
    const value = env[key];
    if (value === undefined || value.trim() === '') return { ok: false, message: `env var ${key} is not set` };
    return { ok: true, value: value.trim() };
  }
  if (ref.startsWith('file:')) {
    const rel = ref.slice(5);
    const path = isAbsolute(rel) ? rel : resolve(baseDir, rel);
    try {
      const value = (await readFile(path, 'utf8')).trim();
      if (value === '') return { ok: false, message: `file ${path} is empty` };
      return { ok: true, value };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { ok: false, message: `cannot read file ${path} (${code})` };
    }
  }
  return { ok: false, message: 'must be env:VAR or file:PATH' };
}
