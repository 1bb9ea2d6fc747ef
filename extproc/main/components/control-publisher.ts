/**
 * The control plane's snapshot publisher (issue 11 point 7): follows the store's revision, builds
 * the data-plane snapshot of each new one (core/control/build-data-plane.ts: tokens re-sealed
 * with the snapshot key) and hands its JSON text to every sink — NATS KV in `voicegate control`,
 * an in-process bus in `voicegate start`. The newest text stays in memory for
 * `GET /admin/v1/snapshot`, the pods' HTTP fallback.
 *
 * The store is polled (`pollMs`) because a commit may come from another control plane on the
 * same database; `nudge()` after a local commit skips the wait. Each sink runs on its own: one
 * that fails (NATS down) is retried with doubling backoff and always with the newest text, while
 * the others and the poll loop go on. A store that fails keeps the last text in force.
 */
import type { Logger } from 'pino';
import { buildDataPlaneSnapshot } from '../../core/control/build-data-plane.ts';
import type { Keyring } from '../../core/control/envelope.ts';
import type { ControlStore } from '../../core/control/store.ts';
import type { Component } from '../lifecycle.ts';

export const DEFAULT_PUBLISH_POLL_MS = 100;
export const DEFAULT_SINK_RETRY_MS = 250;
export const DEFAULT_SINK_MAX_RETRY_MS = 5_000;

/** Receives each new snapshot text; a rejection is retried with backoff (with the newest text). */
export type SnapshotSink = (revision: number, text: string) => Promise<void>;

export interface NamedSink {
  /** For logs: `nats`, `in-process`. */
  readonly name: string;
  readonly deliver: SnapshotSink;
}

export interface PublishedSnapshot {
  readonly revision: number;
  /** The DataPlaneSnapshot JSON pods decode (compile-data-plane.ts decodeDataPlanePayload). */
  readonly text: string;
}

export interface ControlPublisherOptions {
  readonly store: Pick<ControlStore, 'currentRevision' | 'loadConfiguration'>;
  /** Opens the stored tokens. */
  readonly kek: Keyring;
  /** Seals them for pods. */
  readonly snapshotKey: Keyring;
  readonly sinks?: readonly NamedSink[];
  readonly pollMs?: number;
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  readonly logger: Logger;
}

export interface ControlPublisher extends Component {
  /** The newest snapshot built; undefined until the first one. */
  latest(): PublishedSnapshot | undefined;
  /** `cb` runs (synchronously) for each snapshot built, before the sinks get it; returns an unsubscribe. */
  onPublish(cb: (s: PublishedSnapshot) => void): () => void;
  /** Looks at the store now (after a commit) instead of at the next poll. */
  nudge(): void;
}

/**
 * @example
 * const publisher = controlPublisherComponent({ store, kek, snapshotKey, logger,
 *   sinks: [{ name: 'nats', deliver: async (rev, text) => void (await nats.publish(rev, text)) }] });
 * // after a commit: publisher.nudge(); GET /admin/v1/snapshot answers publisher.latest()
 */
export function controlPublisherComponent(opts: ControlPublisherOptions): ControlPublisher {
  const { logger } = opts;
  const pollMs = opts.pollMs ?? DEFAULT_PUBLISH_POLL_MS;
  const retryMs = opts.retryMs ?? DEFAULT_SINK_RETRY_MS;
  const maxRetryMs = Math.max(retryMs, opts.maxRetryMs ?? DEFAULT_SINK_MAX_RETRY_MS);
  const listeners = new Set<(s: PublishedSnapshot) => void>();
  let latest: PublishedSnapshot | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let storeFailing = false;
  /** A revision the builder refused (a token the KEK cannot open): not rebuilt every poll. */
  let refused: number | undefined;

  // ── sinks: each its own loop, so a slow or failing one holds up nobody ──────────────────────
  const sinks = (opts.sinks ?? []).map((s) => ({ ...s, delivered: -1, running: false, failing: false, wake: undefined as (() => void) | undefined, idle: Promise.resolve() }));
  const kickSink = (s: (typeof sinks)[number]) => {
    s.wake?.();
    if (s.running) return;
    s.running = true;
    s.idle = (async () => {
      let delay = retryMs;
      while (!closed && latest && latest.revision > s.delivered) {
        const { revision, text } = latest;
        const t0 = performance.now();
        try {
          await s.deliver(revision, text);
          s.delivered = Math.max(s.delivered, revision);
          delay = retryMs;
          if (s.failing) logger.info({ sink: s.name, revision }, 'snapshot sink delivers again');
          s.failing = false;
          logger.info({ sink: s.name, revision, bytes: Buffer.byteLength(text), ms: Math.round(performance.now() - t0) }, 'snapshot published');
        } catch (err) {
          if (!s.failing) logger.warn({ sink: s.name, revision, error: (err as Error).message }, 'snapshot sink failed; retrying with backoff');
          s.failing = true;
          // A newer snapshot (kickSink) or close ends the wait early.
          await new Promise<void>((r) => {
            s.wake = r;
            setTimeout(r, delay).unref();
          });
          s.wake = undefined;
          delay = Math.min(delay * 2, maxRetryMs);
        }
      }
      s.running = false;
    })();
  };

  // ── the store loop: one check at a time; a nudge during one asks for another ────────────────
  let checking: Promise<void> | undefined;
  let again = false;
  const checkOnce = async (): Promise<void> => {
    let config;
    try {
      const revision = await opts.store.currentRevision();
      if ((latest && revision <= latest.revision) || revision === refused) {
        if (storeFailing) logger.info('control store answers again');
        storeFailing = false;
        return;
      }
      config = await opts.store.loadConfiguration();
      if (storeFailing) logger.info('control store answers again');
      storeFailing = false;
    } catch (err) {
      if (!storeFailing) logger.warn({ error: (err as Error).message, revision: latest?.revision }, 'control store unavailable; keeping the last snapshot');
      storeFailing = true;
      return;
    }
    if (latest && config.revision <= latest.revision) return;
    const t0 = performance.now();
    let text: string;
    try {
      text = JSON.stringify(buildDataPlaneSnapshot({ config, kek: opts.kek, snapshotKey: opts.snapshotKey }));
    } catch (err) {
      refused = config.revision;
      logger.error({ revision: config.revision, error: (err as Error).message }, 'cannot build the snapshot of this revision; pods keep the previous one');
      return;
    }
    latest = { revision: config.revision, text };
    logger.info({ revision: config.revision, bytes: Buffer.byteLength(text), ms: Math.round(performance.now() - t0) }, 'snapshot built');
    for (const cb of listeners) {
      try {
        cb(latest);
      } catch (err) {
        logger.warn({ error: (err as Error).message }, 'a snapshot listener failed');
      }
    }
    for (const s of sinks) kickSink(s);
  };
  const check = (): Promise<void> => {
    if (checking) {
      again = true;
      return checking;
    }
    checking = (async () => {
      do {
        again = false;
        await checkOnce();
      } while (again && !closed);
      checking = undefined;
    })();
    return checking;
  };

  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => void check().finally(schedule), pollMs);
    timer.unref();
  };

  return {
    name: 'snapshot publisher',
    latest: () => latest,
    onPublish(cb) {
      listeners.add(cb);
      return () => void listeners.delete(cb);
    },
    nudge() {
      if (!closed) void check();
    },
    async start() {
      // The first snapshot is built before the API listens, so GET /snapshot rarely answers 503.
      await check();
      schedule();
    },
    drain() {},
    async close() {
      closed = true;
      clearTimeout(timer);
      await checking;
      for (const s of sinks) s.wake?.();
      await Promise.all(sinks.map((s) => s.idle));
    },
  };
}
