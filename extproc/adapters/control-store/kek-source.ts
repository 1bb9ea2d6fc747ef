/**
 * Where the KEKs come from: `VOICEGATE_KEK` holds the key list itself (`kid2:BASE64,kid1:BASE64`)
 * or `file:PATH` naming a file with the list or a YAML/JSON `{keys: [{id, key}]}` document — the
 * same `file:` convention as the config's secret references. The file must not be readable by
 * group or others (like ssh refusing a loose private key).
 */
import { readFile, stat } from 'node:fs/promises';
import { Keyring } from '../../core/control/envelope.ts';
import { KekConfigError } from '../../core/control/errors.ts';
import { parseKekSpec } from '../../core/control/kek.ts';

export const KEK_ENV = 'VOICEGATE_KEK';

/** Reads and checks a KEK file; refuses one that group or others may read. */
export async function readKekFile(path: string): Promise<Keyring> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new KekConfigError(`${KEK_ENV} file ${path} cannot be read`, { cause });
  }
  if (!info.isFile()) throw new KekConfigError(`${KEK_ENV} file ${path} is not a regular file`);
  if ((info.mode & 0o077) !== 0) {
    throw new KekConfigError(`${KEK_ENV} file ${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  return new Keyring(parseKekSpec(await readFile(path, 'utf8'), `${KEK_ENV} file ${path}`));
}

/**
 * The keyring named by `VOICEGATE_KEK`; undefined when the variable is unset (the composition
 * root then either refuses to start or, for the embedded default only, uses the development KEK).
 */
export async function keyringFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<Keyring | undefined> {
  const value = env[KEK_ENV];
  if (value === undefined || value.trim() === '') return undefined;
  if (value.startsWith('file:')) return readKekFile(value.slice('file:'.length));
  return new Keyring(parseKekSpec(value, KEK_ENV));
}
