/**
 * The snapshot source of a pod fed by the control plane (issue 11 point 7): NATS KV first, the
 * control plane's HTTP endpoint while NATS is unreachable, the encrypted disk copy when a pod
 * starts with neither. Every payload is checked (sha256, schema), compiled with the pod's file and
 * swapped whole; an older or equal revision never replaces the one in force, and a payload that
 * does not compile leaves it untouched. A pod with no snapshot yet is not ready (/readyz 503) and
 * answers every request 503, as a file pod without configuration would.
 */
import type { Logger } from 'pino';
import { compileDataPlane, decodeDataPlanePayload } from '../../core/control/compile-data-plane.ts';
import { openSnapshotCopy, sealSnapshotCopy } from '../../core/control/snapshot-copy.ts';
import { snapshotObjectBucket, type SnapshotDelivery } from '../../core/control/snapshot-entry.ts';
import type { Keyring } from '../../core/control/envelope.ts';
import { StaticSnapshotSource } from '../../core/config/snapshot.ts';
import { readFileIfExists, writeFileAtomic } from '../../adapters/files/atomic-file.ts';
import { loadLocalConfigFile, type LocalConfig } from '../../adapters/files/local-config.ts';
import { pollSnapshot } from '../../adapters/http/snapshot-poll.ts';
import { SnapshotValueError, watchSnapshotKv, type SnapshotWatch } from '../../adapters/nats/snapshot-watch.ts';
import type { Component } from '../lifecycle.ts';

export const DEFAULT_SNAPSHOT_POLL_MS = 2_000;
export const DEFAULT_SNAPSHOT_CACHE = '.voicegate/snapshot.enc';
/** How long `start` waits for NATS or HTTP to deliver before it falls back to the disk copy. */
export const DEFAULT_SNAPSHOT_START_WAIT_MS = 3_000;

export type SnapshotOrigin = 'nats' | 'http' | 'disk';

/** What became of a delivered payload (logs say the same; tests and metrics follow these). */
export type SnapshotEvent =
  | { readonly type: 'swapped'; readonly revision: number; readonly from: SnapshotOrigin }
  | { readonly type: 'ignored'; readonly revision: number; readonly from: SnapshotOrigin; readonly inForce: number }
  /** `revision` -1: a KV value too broken to say which revision it was. */
  | { readonly type: 'refused'; readonly revision: number; readonly from: SnapshotOrigin; readonly reason: string };

export interface ControlSnapshotOptions {
  /** The pod's file (identity, providers, cors, limits); re-read on SIGHUP when `configPath` is given. */
  readonly local: LocalConfig;
  readonly configPath?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly keyring: Keyring;
  readonly nats?: { readonly servers: string; readonly bucket: string };
  readonly http?: { readonly controlUrl: string; readonly podToken: string };
  readonly pollMs?: number;
  readonly cachePath: string;
  readonly startWaitMs?: number;
  readonly logger: Logger;
  readonly onEvent?: (e: SnapshotEvent) => void;
}

export interface ControlSnapshotComponent extends Component {
  readonly source: StaticSnapshotSource;
  /** Revision in force, and where it came from. */
  readonly revision: number | undefined;
  readonly origin: SnapshotOrigin | undefined;
  /** Whether a NATS watch is live (HTTP polling runs while it is not). */
  readonly natsUp: boolean;
  /** Re-reads the file and recompiles the payload in force with it (what SIGHUP does). */
  reload(): Promise<boolean>;
}

export function controlSnapshotComponent(opts: ControlSnapshotOptions): ControlSnapshotComponent {
  const { logger, keyring } = opts;
  const pollMs = opts.pollMs ?? DEFAULT_SNAPSHOT_POLL_MS;
  const source = new StaticSnapshotSource();
  let local = opts.local;
  let closed = false;
  let revision: number | undefined;
  let origin: SnapshotOrigin | undefined;
  let inForce: SnapshotDelivery | undefined;
  /** A revision that did not compile: not retried (nor logged again) until the file changes. */
  let refused: number | undefined;
  let watch: SnapshotWatch | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let written = -1;
  let writing: Promise<void> = Promise.resolve();
  let httpFailing = false;
  let natsFailing = false;
  let stopHup: (() => void) | undefined;

  // One payload at a time: NATS and HTTP may deliver the same revision at once.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn);
    chain = next.catch(() => undefined);
    return next;
  };

  const compile = async (d: SnapshotDelivery, from: SnapshotOrigin) => {
    const payload = decodeDataPlanePayload(d.payload, { revision: d.revision, ...(d.sha256 !== undefined ? { sha256: d.sha256 } : {}) });
    return compileDataPlane({ payload, local: local.doc, keyring, resolveLocalSecret: local.resolveSecret, origin: `${from}:${from === 'nats' ? opts.nats?.bucket : from === 'http' ? opts.http?.controlUrl : opts.cachePath}` });
  };

  const accept = (d: SnapshotDelivery, from: SnapshotOrigin): Promise<boolean> =>
    serial(async () => {
      if (closed) return false;
      if (revision !== undefined && d.revision <= revision) {
        opts.onEvent?.({ type: 'ignored', revision: d.revision, from, inForce: revision });
        return false;
      }
      if (d.revision === refused) return false;
      let result;
      try {
        result = await compile(d, from);
      } catch (err) {
        logger.error({ revision: d.revision, from, error: (err as Error).message }, 'snapshot refused; keeping the one in force');
        opts.onEvent?.({ type: 'refused', revision: d.revision, from, reason: (err as Error).message });
        return false;
      }
      if (!result.ok) {
        refused = d.revision;
        const issues = result.issues.map((i) => `${i.path}: ${i.message}`);
        logger.error({ revision: d.revision, from, issues }, 'snapshot refused; keeping the one in force');
        opts.onEvent?.({ type: 'refused', revision: d.revision, from, reason: issues.join('; ') });
        return false;
      }
      if (result.withoutToken.length > 0) logger.warn({ revision: d.revision, accounts: result.withoutToken }, 'accounts without a token are left out, with their models');
      if (result.droppedDefaults.length > 0) logger.warn({ revision: d.revision, defaults: result.droppedDefaults }, "the file's default models name no model of this revision; dropped");
      source.swap(result.snapshot);
      revision = d.revision;
      origin = from;
      inForce = d;
      logger.info({ revision: d.revision, from }, 'snapshot swapped');
      opts.onEvent?.({ type: 'swapped', revision: d.revision, from });
      if (from !== 'disk') saveCopy(d);
      return true;
    });

  const saveCopy = (d: SnapshotDelivery) => {
    writing = writing.then(async () => {
      if (d.revision <= written) return;
      try {
        await writeFileAtomic(opts.cachePath, sealSnapshotCopy(keyring, d.payload, d.revision));
        written = d.revision;
      } catch (err) {
        logger.warn({ path: opts.cachePath, error: (err as Error).message }, 'cannot write the snapshot disk copy');
      }
    });
  };

  const loadCopy = async (): Promise<boolean> => {
    let text: string | undefined;
    try {
      text = await readFileIfExists(opts.cachePath);
    } catch (err) {
      logger.warn({ path: opts.cachePath, error: (err as Error).message }, 'cannot read the snapshot disk copy');
      return false;
    }
    if (text === undefined) return false;
    let opened;
    try {
      opened = openSnapshotCopy(keyring, text);
    } catch (err) {
      logger.error({ path: opts.cachePath, error: (err as Error).message }, 'snapshot disk copy refused');
      return false;
    }
    // Its sha256 is not stored: the copy's GCM tag already proves the bytes are the ones written.
    const ok = await accept({ revision: opened.revision, payload: opened.payload }, 'disk');
    if (ok) written = Math.max(written, opened.revision);
    return ok;
  };

  const pollOnce = async (): Promise<void> => {
    const http = opts.http;
    if (!http || closed) return;
    try {
      const r = await pollSnapshot({ controlUrl: http.controlUrl, podToken: http.podToken, ...(revision !== undefined ? { revision } : {}) });
      if (httpFailing) logger.info({ controlUrl: http.controlUrl }, 'control plane answers again');
      httpFailing = false;
      if (r.kind === 'snapshot') await accept(r, 'http');
    } catch (err) {
      if (!httpFailing) logger.warn({ controlUrl: http.controlUrl, error: (err as Error).message }, 'control plane not reachable over HTTP; retrying');
      httpFailing = true;
    }
  };

  const schedulePoll = () => {
    if (closed || !opts.http) return;
    pollTimer = setTimeout(() => {
      // Polled only while NATS is not delivering: with a live watch, HTTP would only repeat it.
      const run = watch?.up ? Promise.resolve() : pollOnce();
      void run.finally(schedulePoll);
    }, pollMs);
    pollTimer.unref();
  };

  const reload = async (): Promise<boolean> => {
    if (!opts.configPath) return false;
    try {
      local = await loadLocalConfigFile(opts.configPath, opts.env);
    } catch (err) {
      logger.error({ error: (err as Error).message }, 'configuration reload failed; keeping the snapshot in force');
      return false;
    }
    return serial(async () => {
      refused = undefined;
      if (!inForce || !origin) return true;
      const r = await compile(inForce, origin).catch((err: Error) => ({ ok: false as const, issues: [{ path: '', message: err.message }] }));
      if (!r.ok) {
        logger.error({ issues: r.issues.map((i) => `${i.path}: ${i.message}`) }, 'configuration reload failed; keeping the snapshot in force');
        return false;
      }
      source.swap(r.snapshot);
      logger.info({ revision }, 'configuration reloaded');
      return true;
    });
  };

  return {
    name: 'control-plane snapshot',
    source,
    get revision() {
      return revision;
    },
    get origin() {
      return origin;
    },
    get natsUp() {
      return watch?.up ?? false;
    },
    reload,
    async start() {
      let natsFirst: () => void = () => {};
      const natsTried = new Promise<void>((r) => (natsFirst = r));
      if (opts.nats) {
        const { servers, bucket } = opts.nats;
        watch = watchSnapshotKv({
          servers,
          bucket,
          objectBucket: snapshotObjectBucket(bucket),
          onDelivery: async (d) => void (await accept(d, 'nats')),
          onStatus: (up) => {
            if (up) natsFirst();
            if (up && natsFailing) logger.info({ bucket }, 'NATS snapshot watch is live again');
            if (up) natsFailing = false;
          },
          onError: (err) => {
            if (err instanceof SnapshotValueError) {
              logger.error({ revision: err.revision, from: 'nats', error: err.message }, 'snapshot refused; keeping the one in force');
              opts.onEvent?.({ type: 'refused', revision: err.revision ?? -1, from: 'nats', reason: err.message });
              return;
            }
            natsFirst();
            if (!natsFailing) logger.warn({ bucket, error: err.message }, `NATS snapshot watch unavailable; ${opts.http ? `polling the control plane every ${pollMs} ms` : 'no HTTP fallback (--control-url)'}; retrying`);
            natsFailing = true;
          },
        });
      } else natsFirst();
      const httpTried = opts.http ? pollOnce() : Promise.resolve();
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([natsTried, httpTried]),
        new Promise<void>((r) => (waited = setTimeout(r, opts.startWaitMs ?? DEFAULT_SNAPSHOT_START_WAIT_MS))),
      ]);
      clearTimeout(waited);
      await chain;
      if (!source.current()) {
        const loaded = await loadCopy();
        if (loaded) logger.warn({ revision, path: opts.cachePath }, 'serving the snapshot disk copy until NATS or the control plane answers');
        else logger.warn('no snapshot yet: not ready, every request answers 503 until one arrives');
      }
      schedulePoll();
      if (opts.configPath) {
        const onHup = () => void reload();
        process.on('SIGHUP', onHup);
        stopHup = () => process.off('SIGHUP', onHup);
      }
    },
    drain() {
      stopHup?.();
      stopHup = undefined;
    },
    async close() {
      closed = true;
      stopHup?.();
      clearTimeout(pollTimer);
      await watch?.close();
      await chain;
      await writing;
    },
  };
}
