/**
 * Reloads a config file into a snapshot source on SIGHUP. A file that fails to load leaves the
 * snapshot in force untouched (the error is logged with every problem), so a bad edit never takes
 * a running gateway down.
 */
import type { Logger } from './logger.ts';
import { loadSnapshotFromFile } from '../adapters/files/config-file.ts';
import type { StaticSnapshotSource } from '../core/config/snapshot.ts';
import type { Component } from './lifecycle.ts';

export async function reloadInto(source: StaticSnapshotSource, path: string, logger: Logger): Promise<boolean> {
  try {
    const next = await loadSnapshotFromFile(path);
    const swapped = source.swap(next);
    logger.info({ origin: next.origin, version: next.version, swapped }, 'configuration reloaded');
    return swapped;
  } catch (err) {
    logger.error({ error: (err as Error).message }, 'configuration reload failed; keeping the snapshot in force');
    return false;
  }
}

/** Installs a SIGHUP handler; returns a function that removes it. */
export function reloadOnSighup(source: StaticSnapshotSource, path: string, logger: Logger): () => void {
  const onHup = () => void reloadInto(source, path, logger);
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

/** SIGHUP reload as a component: installed once everything before it started, removed first. */
export function reloadComponent(source: StaticSnapshotSource, path: string, logger: Logger): Component {
  let stop: (() => void) | undefined;
  return {
    name: 'SIGHUP reload',
    async start() {
      stop = reloadOnSighup(source, path, logger);
    },
    drain() {
      stop?.();
      stop = undefined;
    },
    async close() {
      stop?.();
    },
  };
}
