/**
 * The development KEK of the embedded default (`voicegate start` without VOICEGATE_KEK): created
 * once under `.voicegate/`, mode 0600, and announced with a warning, because a key stored beside
 * the data it protects only guards against a copied database, not a copied directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Keyring } from '../../core/control/envelope.ts';
import { readKekFile } from './kek-source.ts';

export interface DevKek {
  readonly keyring: Keyring;
  readonly path: string;
  /** True when this call generated the file. */
  readonly created: boolean;
  /** One line for the start banner. */
  readonly warning: string;
}

/** Ensures `<dir>/kek` exists (creating it with a fresh 256-bit key if missing) and loads it. */
export async function ensureDevKek(dir = '.voicegate'): Promise<DevKek> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'kek');
  let created = false;
  try {
    // 'wx' creates exclusively: two processes starting together never overwrite each other's key.
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(`dev-${Date.now().toString(36)}:${randomBytes(32).toString('base64')}\n`, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const keyring = await readKekFile(path);
  const warning = `${created ? 'generated a development' : 'using the development'} key-encryption key ${path}: ` +
    'it sits beside the data it protects — set VOICEGATE_KEK for anything but a laptop';
  return { keyring, path, created, warning };
}
