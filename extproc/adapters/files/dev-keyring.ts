/**
 * A development keyring file: created once with a fresh 256-bit key, mode 0600, then read back
 * like any keyring file. The embedded default's KEK and snapshot key are both made this way; a
 * key stored beside what it protects is for a laptop only, which each caller's warning says.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Keyring } from '../../core/control/envelope.ts';
import { readKeyringFile } from './keyring-file.ts';

export interface DevKeyring {
  readonly keyring: Keyring;
  readonly path: string;
  /** True when this call generated the file. */
  readonly created: boolean;
}

/** Ensures `<dir>/<file>` exists (key id `<idPrefix>-<time>`) and loads it. */
export async function ensureDevKeyring(dir: string, file: string, idPrefix: string, label: string): Promise<DevKeyring> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, file);
  let created = false;
  try {
    // 'wx' creates exclusively: two processes starting together never overwrite each other's key.
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(`${idPrefix}-${Date.now().toString(36)}:${randomBytes(32).toString('base64')}\n`, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return { keyring: await readKeyringFile(path, label), path, created };
}
