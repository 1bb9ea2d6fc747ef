/**
 * The development snapshot key of the embedded control plane (PGlite, no VOICEGATE_SNAPSHOT_KEY):
 * created once beside the development KEK, mode 0600, in the keyring format pods read with
 * `--snapshot-key-file` — so a laptop's pods can be pointed at the printed path. As with the dev
 * KEK, a key stored beside what it protects is for development only, hence the warning.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Keyring } from '../../core/control/envelope.ts';
import { readKeyringFile } from './keyring-file.ts';

export interface DevSnapshotKey {
  readonly keyring: Keyring;
  readonly path: string;
  readonly created: boolean;
  /** One line: the path pods need, and why not to use it in production. */
  readonly warning: string;
}

/** Ensures `<dir>/snapshot.key` exists (a fresh 256-bit key if missing) and loads it. */
export async function ensureDevSnapshotKey(dir = '.voicegate'): Promise<DevSnapshotKey> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'snapshot.key');
  let created = false;
  try {
    // 'wx': two control planes starting together never overwrite each other's key.
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(`dev-snap-${Date.now().toString(36)}:${randomBytes(32).toString('base64')}\n`, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const keyring = await readKeyringFile(path, 'development snapshot key');
  const warning = `${created ? 'generated a development' : 'using the development'} snapshot key ${path} (pods: --snapshot-key-file ${path}): ` +
    'set VOICEGATE_SNAPSHOT_KEY or --snapshot-key-file for anything but a laptop';
  return { keyring, path, created, warning };
}
