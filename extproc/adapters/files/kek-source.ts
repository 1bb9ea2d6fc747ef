/**
 * Where the KEKs come from: `VOICEGATE_KEK` holds the key list itself (`kid2:BASE64,kid1:BASE64`)
 * or `file:PATH` naming a file with the list or a YAML/JSON `{keys: [{id, key}]}` document — the
 * same `file:` convention as the config's secret references. The file must not be readable by
 * group or others (like ssh refusing a loose private key).
 */
import { Keyring } from '../../core/control/envelope.ts';
import { parseKekSpec } from '../../core/control/kek.ts';
import { readKeyringFile } from './keyring-file.ts';

export const KEK_ENV = 'VOICEGATE_KEK';

/** Reads and checks a KEK file; refuses one that group or others may read. */
export function readKekFile(path: string): Promise<Keyring> {
  return readKeyringFile(path, `${KEK_ENV} file`);
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
