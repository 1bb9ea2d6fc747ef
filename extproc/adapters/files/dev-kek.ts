/**
 * The development KEK of the embedded default (`voicegate start` without VOICEGATE_KEK): created
 * once under `.voicegate/` and announced with a warning, because a key stored beside the data it
 * protects only guards against a copied database, not a copied directory.
 */
import type { Keyring } from '../../core/control/envelope.ts';
import { ensureDevKeyring } from './dev-keyring.ts';
import { KEK_ENV } from './kek-source.ts';

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
  const k = await ensureDevKeyring(dir, 'kek', 'dev', `${KEK_ENV} file`);
  const warning = `${k.created ? 'generated a development' : 'using the development'} key-encryption key ${k.path}: ` +
    'it sits beside the data it protects — set VOICEGATE_KEK for anything but a laptop';
  return { ...k, warning };
}
