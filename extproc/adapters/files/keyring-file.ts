/**
 * Reads a keyring file (`id:base64,…` or `{keys: [{id, key}]}`, the `VOICEGATE_KEK` format), such
 * as the pod's snapshot key. Refuses a file group or others may read, as ssh refuses a loose key.
 */
import { readFile, stat } from 'node:fs/promises';
import { Keyring } from '../../core/control/envelope.ts';
import { KekConfigError } from '../../core/control/errors.ts';
import { parseKekSpec } from '../../core/control/kek.ts';

export async function readKeyringFile(path: string, label: string): Promise<Keyring> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new KekConfigError(`${label} ${path} cannot be read`, { cause });
  }
  if (!info.isFile()) throw new KekConfigError(`${label} ${path} is not a regular file`);
  if ((info.mode & 0o077) !== 0) {
    throw new KekConfigError(`${label} ${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  return new Keyring(parseKekSpec(await readFile(path, 'utf8'), `${label} ${path}`));
}

/** A one-line secret (a pod token) from a file, trimmed; refuses an empty or loose file. */
export async function readSecretFile(path: string, label: string): Promise<string> {
  let info;
  try {
    info = await stat(path);
  } catch (cause) {
    throw new SecretFileError(`${label} ${path} cannot be read`, { cause });
  }
  if ((info.mode & 0o077) !== 0) {
    throw new SecretFileError(`${label} ${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  const text = (await readFile(path, 'utf8')).trim();
  if (text === '' || /\s/.test(text)) throw new SecretFileError(`${label} ${path} must hold one token on one line`);
  return text;
}

export class SecretFileError extends Error {
  override readonly name = 'SecretFileError';
}
