/**
 * The in-process bus of `voicegate start` with the control plane embedded: a sink of the snapshot
 * publisher (control-publisher.ts) that compiles each data-plane snapshot with the file's local
 * sections and swaps it into the edge's source — what a pod does with a NATS delivery, minus the
 * transport. A revision that does not compile (an account on a provider the file does not define)
 * leaves the snapshot in force, as on a pod. SIGHUP re-reads the file's local sections and
 * recompiles the revision in force with them.
 */
import type { Logger } from 'pino';
import { StaticSnapshotSource, type Snapshot } from '../../core/config/snapshot.ts';
import { compileDataPlane, decodeDataPlanePayload } from '../../core/control/compile-data-plane.ts';
import type { Keyring } from '../../core/control/envelope.ts';
import type { LocalConfig } from '../../adapters/files/local-config.ts';
import type { NamedSink } from './control-publisher.ts';
import type { Component } from '../lifecycle.ts';

export type CompileOutcome = { readonly ok: true; readonly snapshot: Snapshot } | { readonly ok: false; readonly issues: readonly string[] };

export interface InProcessSnapshotOptions {
  readonly local: LocalConfig;
  /** The ephemeral key the publisher sealed the tokens with. */
  readonly snapshotKey: Keyring;
  /** For the snapshot's origin (logs, /readyz): e.g. `control:pglite`. */
  readonly origin: string;
  /** Re-reads the file's local sections (SIGHUP); absent, reload is a no-op. */
  readonly readLocal?: () => Promise<LocalConfig>;
  readonly logger: Logger;
}

export interface InProcessSnapshot {
  readonly source: StaticSnapshotSource;
  readonly sink: NamedSink;
  /** The revision in force, undefined before the first swap. */
  readonly revision: number | undefined;
  /** The outcome of the first delivery (the command refuses to start on a failed one). */
  first(): Promise<CompileOutcome>;
  /**
   * Resolves once revision `rev` (or a newer one) was delivered — swapped or refused — or after
   * `ms`: lets an admin call answer only when the edge already decides with its change.
   */
  waitFor(rev: number, ms: number): Promise<boolean>;
  /** Re-reads the local sections and recompiles the revision in force (what SIGHUP does). */
  reload(): Promise<boolean>;
  /** SIGHUP → reload, installed when started and removed on drain. */
  readonly hup: Component;
}

export function inProcessSnapshot(opts: InProcessSnapshotOptions): InProcessSnapshot {
  const { logger } = opts;
  const source = new StaticSnapshotSource();
  let local = opts.local;
  let revision: number | undefined;
  /** Last delivered revision (swapped or refused) and its text, for reload. */
  let seen = -1;
  let lastText: string | undefined;
  const waiters = new Set<{ rev: number; done: (ok: boolean) => void }>();
  let resolveFirst: (o: CompileOutcome) => void = () => {};
  const firstOutcome = new Promise<CompileOutcome>((r) => (resolveFirst = r));

  // One compile at a time: a SIGHUP reload may come while the publisher delivers.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = chain.then(fn);
    chain = next.catch(() => undefined);
    return next;
  };

  const compile = async (rev: number, text: string): Promise<CompileOutcome> => {
    try {
      const payload = decodeDataPlanePayload(text, { revision: rev });
      const r = await compileDataPlane({ payload, local: local.doc, keyring: opts.snapshotKey, resolveLocalSecret: local.resolveSecret, origin: opts.origin });
      if (!r.ok) return { ok: false, issues: r.issues.map((i) => `${i.path}: ${i.message}`) };
      if (r.withoutToken.length > 0) logger.warn({ revision: rev, accounts: r.withoutToken }, 'accounts without a token are left out, with their models');
      if (r.droppedDefaults.length > 0) logger.warn({ revision: rev, defaults: r.droppedDefaults }, "the file's default models name no model of this revision; dropped");
      return { ok: true, snapshot: r.snapshot };
    } catch (err) {
      return { ok: false, issues: [(err as Error).message] };
    }
  };

  const settle = (rev: number) => {
    seen = Math.max(seen, rev);
    for (const w of waiters) if (w.rev <= seen) w.done(true);
  };

  const deliver = (rev: number, text: string): Promise<void> =>
    serial(async () => {
      if (rev <= seen) return;
      lastText = text;
      const outcome = await compile(rev, text);
      if (outcome.ok) {
        source.swap(outcome.snapshot);
        revision = rev;
        logger.info({ revision: rev }, 'snapshot swapped');
      } else {
        logger.error({ revision: rev, issues: outcome.issues }, 'snapshot refused; keeping the one in force');
      }
      resolveFirst(outcome);
      settle(rev);
    });

  const reload = async (): Promise<boolean> => {
    if (!opts.readLocal) return false;
    try {
      local = await opts.readLocal();
    } catch (err) {
      logger.error({ error: (err as Error).message }, 'configuration reload failed; keeping the snapshot in force');
      return false;
    }
    return serial(async () => {
      if (lastText === undefined) return true;
      const outcome = await compile(seen, lastText);
      if (!outcome.ok) {
        logger.error({ issues: outcome.issues }, 'configuration reload failed; keeping the snapshot in force');
        return false;
      }
      source.swap(outcome.snapshot);
      revision = seen;
      logger.info({ revision: seen }, "configuration reloaded (the file's identity, providers, cors and limits; accounts and models stay the control store's)");
      return true;
    });
  };

  let stopHup: (() => void) | undefined;
  const hup: Component = {
    name: 'SIGHUP reload',
    async start() {
      const onHup = () => void reload();
      process.on('SIGHUP', onHup);
      stopHup = () => process.off('SIGHUP', onHup);
    },
    drain() {
      stopHup?.();
      stopHup = undefined;
    },
    async close() {
      stopHup?.();
      for (const w of waiters) w.done(false);
    },
  };

  return {
    source,
    sink: { name: 'in-process', deliver },
    get revision() {
      return revision;
    },
    first: () => firstOutcome,
    waitFor(rev, ms) {
      if (rev <= seen) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const w = {
          rev,
          done: (ok: boolean) => {
            clearTimeout(timer);
            waiters.delete(w);
            resolve(ok);
          },
        };
        const timer = setTimeout(() => w.done(false), ms);
        timer.unref();
        waiters.add(w);
      });
    },
    reload,
    hup,
  };
}
