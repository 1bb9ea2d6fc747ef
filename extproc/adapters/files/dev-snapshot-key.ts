/**
 * The development snapshot key of the embedded control plane (PGlite, no VOICEGATE_SNAPSHOT_KEY):
 * created once beside the development KEK, in the keyring format pods read with
 * `--snapshot-key-file` — so a laptop's pods can be pointed at the printed path.
 */
import type { Keyring } from '../../core/control/envelope.ts';
import { ensureDevKeyring } from './dev-keyring.ts';

export interface DevSnapshotKey {
  readonly keyring: Keyring;
  readonly path: string;
  readonly created: boolean;
  /** One line: the path pods need, and why not to use it in production. */
  readonly warning: string;
}

/** Ensures `<dir>/snapshot.key` exists (a fresh 256-bit key if missing) and loads it. */
export async function ensureDevSnapshotKey(dir = '.voicegate'): Promise<DevSnapshotKey> {
  const k = await ensureDevKeyring(dir, 'snapshot.key', 'dev-snap', 'development snapshot key');
  const warning = `${k.created ? 'generated a development' : 'using the development'} snapshot key ${k.path} (pods: --snapshot-key-file ${k.path}): ` +
    'set VOICEGATE_SNAPSHOT_KEY or --snapshot-key-file for anything but a laptop';
  return { ...k, warning };
}
