/**
 * Where `edge` and `extproc` get their snapshot: the --config file alone (reloaded on SIGHUP, as
 * always), or — with --control-url or --control-nats — the control plane's snapshot compiled with
 * the file's identity, providers, cors and limits (components/control-snapshot.ts).
 */
import type { Logger } from 'pino';
import { StaticSnapshotSource } from '../core/config/snapshot.ts';
import { Keyring } from '../core/control/envelope.ts';
import { parseKekSpec } from '../core/control/kek.ts';
import { readKeyringFile, readSecretFile } from '../adapters/files/keyring-file.ts';
import { loadLocalConfigFile } from '../adapters/files/local-config.ts';
import { loadConfig, report, type RunContext } from './command.ts';
import { controlSnapshotComponent } from './components/control-snapshot.ts';
import type { Component } from './lifecycle.ts';
import { reloadComponent } from './reload.ts';

export const SNAPSHOT_KEY_ENV = 'VOICEGATE_SNAPSHOT_KEY';

export interface ConfigFlags {
  readonly config: string;
  readonly nats?: string | undefined;
  readonly controlNats?: string | undefined;
  readonly configBucket: string;
  readonly controlUrl?: string | undefined;
  readonly snapshotKeyFile?: string | undefined;
  readonly podTokenFile?: string | undefined;
  readonly snapshotCache: string;
  readonly snapshotPoll: number;
}

export interface ConfigSource {
  readonly source: StaticSnapshotSource;
  /** Start before everything that reads the snapshot (limits, listeners). */
  readonly first: readonly Component[];
  /** Start after everything (the SIGHUP reload of file mode). */
  readonly last: readonly Component[];
}

/** The source of the command's snapshot, or the exit code once the reason is on stderr. */
export async function configSourceFromFlags(ctx: RunContext, o: ConfigFlags, logger: Logger): Promise<ConfigSource | number> {
  if (o.controlUrl === undefined && o.controlNats === undefined) {
    const snapshot = await loadConfig(ctx, o.config);
    if (!snapshot) return 1;
    const source = new StaticSnapshotSource(snapshot);
    return { source, first: [], last: [reloadComponent(source, o.config, logger)] };
  }
  let keyring: Keyring;
  let podToken: string | undefined;
  try {
    const fromEnv = ctx.env[SNAPSHOT_KEY_ENV];
    if (o.snapshotKeyFile !== undefined) keyring = await readKeyringFile(o.snapshotKeyFile, '--snapshot-key-file');
    else if (fromEnv !== undefined && fromEnv.trim() !== '') {
      keyring = fromEnv.startsWith('file:') ? await readKeyringFile(fromEnv.slice('file:'.length), `${SNAPSHOT_KEY_ENV} file`) : new Keyring(parseKekSpec(fromEnv, SNAPSHOT_KEY_ENV));
    } else {
      report(ctx, `the control plane's snapshot needs the snapshot key: --snapshot-key-file FILE or ${SNAPSHOT_KEY_ENV}`);
      return 2;
    }
    if (o.controlUrl !== undefined) {
      if (o.podTokenFile === undefined) {
        report(ctx, '--control-url needs --pod-token-file (the token the control plane expects from pods)');
        return 2;
      }
      podToken = await readSecretFile(o.podTokenFile, '--pod-token-file');
    }
  } catch (err) {
    report(ctx, (err as Error).message);
    return 2;
  }
  let local;
  try {
    local = await loadLocalConfigFile(o.config, ctx.env);
  } catch (err) {
    report(ctx, (err as Error).message);
    return 1;
  }
  const natsUrl = o.controlNats ?? o.nats;
  const component = controlSnapshotComponent({
    local,
    configPath: o.config,
    env: ctx.env,
    keyring,
    ...(natsUrl ? { nats: { servers: natsUrl, bucket: o.configBucket } } : {}),
    ...(o.controlUrl !== undefined && podToken !== undefined ? { http: { controlUrl: o.controlUrl, podToken } } : {}),
    pollMs: o.snapshotPoll,
    cachePath: o.snapshotCache,
    logger,
  });
  return { source: component.source, first: [component], last: [] };
}
