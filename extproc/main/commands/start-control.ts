/**
 * The control plane inside `voicegate start` (issue 11 point 8): the control store — PostgreSQL
 * with --database/DATABASE_URL (VOICEGATE_KEK required), otherwise PGlite under --data-dir with
 * the development KEK beside it —, the admin API on --host:--admin-port, and the snapshot
 * publisher whose one sink is the edge's own source (components/in-process-snapshot.ts). The
 * provider tokens cross from the store to the edge sealed under a snapshot key that exists only
 * in this process's memory: nothing about it is written anywhere.
 *
 * First start (a store at revision 0): the file's accounts, models and teams are imported through
 * the admin API's apply logic as actor `system:file`, and the bootstrap administrator's key is
 * minted (the caller prints it once). Later starts leave the store as it is.
 */
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { createAdminApp, type UsageQuery } from '../../adapters/admin-api/app.ts';
import { applyConfiguration, parseApplyDocument } from '../../adapters/admin-api/apply.ts';
import type { TokenVerifier } from '../../adapters/admin-api/auth.ts';
import { bootstrapAdmin } from '../../adapters/admin-api/bootstrap.ts';
import { ProblemError } from '../../adapters/admin-api/problem.ts';
import { listenAdmin, type AdminServer } from '../../adapters/admin-api/server.ts';
import { ensureDevKek } from '../../adapters/control-store/dev-kek.ts';
import { keyringFromEnv } from '../../adapters/control-store/kek-source.ts';
import { openPgControlStore, openPgliteControlStore, type OpenedControlStore } from '../../adapters/control-store/open-store.ts';
import { resolveSecret } from '../../adapters/files/secrets.ts';
import { loadStartConfigFile, type StartConfigFile } from '../../adapters/files/start-config.ts';
import { queryUsageBetween } from '../../adapters/postgres/usage-query.ts';
import type { Snapshot, SnapshotSource } from '../../core/config/snapshot.ts';
import { Keyring } from '../../core/control/envelope.ts';
import { IdentityVerifier } from '../../core/identity/identity.ts';
import { report, type RunContext } from '../command.ts';
import { controlPublisherComponent } from '../components/control-publisher.ts';
import { inProcessSnapshot, type InProcessSnapshot } from '../components/in-process-snapshot.ts';
import { listenError, messageOf, type Component } from '../lifecycle.ts';
import { DATABASE_CONNECT_TIMEOUT_MS } from '../usage-pipeline.ts';

/** The actor of the first start's import, in the audit log. */
export const FILE_IMPORT_ACTOR = 'system:file';
/** Longest an admin write waits for the edge to decide with it before answering anyway. */
export const WRITE_VISIBLE_WAIT_MS = 2_000;

export interface EmbeddedControlFlags {
  readonly config: string;
  readonly database?: string | undefined;
  readonly dataDir: string;
  readonly host: string;
  readonly adminPort: number;
  readonly insecure: boolean;
}

export interface EmbeddedControl {
  readonly inProcess: InProcessSnapshot;
  /** The first snapshot, compiled before any listener opens. */
  readonly snapshot: Snapshot;
  /** `PostgreSQL` or `PGlite <dir>`. */
  readonly storeLabel: string;
  /** The store's revision once the import (if any) is done. */
  readonly revision: number;
  /** The bootstrap administrator's key, on the start that minted it; print once, never log. */
  readonly bootstrapKey: string | undefined;
  /** Set on the first start: what the file's import changed. */
  readonly imported: { readonly changes: number } | undefined;
  /** Started after the edge. */
  readonly admin: Component & { readonly url: string | undefined };
  /** Publisher, store and pool; idempotent. Call after every component closed. */
  close(): Promise<void>;
}

/** An admin verifier that follows the issuers of the snapshot in force (SIGHUP may change them). */
function followingVerifier(source: SnapshotSource): TokenVerifier {
  const bySnapshot = new WeakMap<Snapshot, IdentityVerifier>();
  const none = new IdentityVerifier([]);
  return {
    verify(token) {
      const s = source.current();
      if (!s) return none.verify(token);
      let v = bySnapshot.get(s);
      if (!v) bySnapshot.set(s, (v = new IdentityVerifier(s.issuers)));
      return v.verify(token);
    },
  };
}

async function openStore(ctx: RunContext, o: EmbeddedControlFlags): Promise<{ opened: OpenedControlStore; pool?: pg.Pool; kek: Keyring; label: string } | number> {
  let kek: Keyring | undefined;
  try {
    kek = await keyringFromEnv(ctx.env);
  } catch (err) {
    report(ctx, messageOf(err));
    return 2;
  }
  if (o.database !== undefined) {
    if (!kek) {
      report(ctx, 'the control plane on PostgreSQL (--database/DATABASE_URL) needs VOICEGATE_KEK (kid:BASE64 of 32 bytes, or file:PATH); or pass --control off to take accounts and models from the file');
      return 2;
    }
    const pool = new pg.Pool({ connectionString: o.database, max: 5, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS });
    // An idle client's error (server restart) must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    try {
      return { opened: await openPgControlStore(pool, { keyring: kek }), pool, kek, label: 'PostgreSQL' };
    } catch (err) {
      await pool.end();
      throw err;
    }
  }
  if (!kek) {
    const dev = await ensureDevKek(dirname(resolve(o.dataDir)));
    report(ctx, `warning: ${dev.warning}`);
    kek = dev.keyring;
  }
  return { opened: await openPgliteControlStore({ keyring: kek, dataDir: o.dataDir }), kek, label: `PGlite ${o.dataDir}` };
}

/** Opens the store, imports on the first start, compiles the first snapshot; or the exit code. */
export async function openEmbeddedControl(ctx: RunContext, o: EmbeddedControlFlags, file: StartConfigFile, logger: Logger): Promise<EmbeddedControl | number> {
  let store;
  try {
    store = await openStore(ctx, o);
  } catch (err) {
    report(ctx, `cannot open the control store: ${messageOf(err)}`);
    return 1;
  }
  if (typeof store === 'number') return store;
  const { opened, pool, kek, label } = store;
  const cs = opened.store;
  let publisherClose: (() => Promise<void>) | undefined;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await publisherClose?.();
      await opened.close();
      await pool?.end();
    })());

  try {
    const baseDir = dirname(resolve(o.config));
    const resolveRef = (ref: string) => resolveSecret(ref, baseDir, ctx.env);
    let imported: { changes: number } | undefined;
    // Revision 0 is a store nothing ever changed: the only time the file seeds it.
    if (file.hasSeed && (await cs.currentRevision()) === 0) {
      try {
        const result = await applyConfiguration(cs, parseApplyDocument(file.text), { actor: FILE_IMPORT_ACTOR, dryRun: false, resolveSecret: resolveRef });
        imported = { changes: result.changes.length };
      } catch (err) {
        if (!(err instanceof ProblemError)) throw err;
        report(ctx, `cannot import ${o.config} into the control store: ${err.problem.detail}`);
        await close();
        return 1;
      }
    }
    const boot = await bootstrapAdmin(cs);
    const revision = await cs.currentRevision();

    // Tokens reach the edge sealed under a key that lives and dies with this process.
    const snapshotKey = new Keyring([{ id: 'start-ephemeral', key: randomBytes(32) }]);
    const inProcess = inProcessSnapshot({
      local: file.local,
      snapshotKey,
      origin: `control:${pool ? 'postgresql' : 'pglite'}`,
      readLocal: async () => (await loadStartConfigFile(o.config, ctx.env)).local,
      logger,
    });
    const publisher = controlPublisherComponent({ store: cs, kek, snapshotKey, sinks: [inProcess.sink], logger });
    publisherClose = () => publisher.close();
    await publisher.start();
    if (!publisher.latest()) {
      report(ctx, 'cannot build a snapshot from the control store (see the log above)');
      await close();
      return 1;
    }
    const first = await inProcess.first();
    if (!first.ok) {
      report(ctx, `the control store's configuration does not compile with ${o.config}: ${first.issues.join('; ')}`);
      await close();
      return 1;
    }

    const usage: UsageQuery | undefined = pool ? ({ by, from, to }) => queryUsageBetween(pool, by, from, to) : undefined;
    const app = createAdminApp({
      store: cs,
      verifier: followingVerifier(inProcess.source),
      usage,
      resolveSecret: resolveRef,
      ready: async () => {
        await cs.currentRevision();
        return true;
      },
    });
    // Read-your-writes: a change answers once the edge decides with it, so the next command a
    // user types (or a script runs) already sees it. Bounded, so a refused revision never hangs a call.
    const fetch = async (req: Request): Promise<Response> => {
      const res = await app.fetch(req);
      if (req.method !== 'GET' && req.method !== 'HEAD' && res.status < 300) {
        const rev = await cs.currentRevision().catch(() => undefined);
        publisher.nudge();
        if (rev !== undefined) await inProcess.waitFor(rev, WRITE_VISIBLE_WAIT_MS);
      }
      return res;
    };
    let server: AdminServer | undefined;
    const admin = {
      name: 'admin API',
      get url() {
        return server?.url;
      },
      async start() {
        server = await listenAdmin(fetch, { host: o.host, port: o.adminPort, insecure: o.insecure }).catch((err: unknown) => Promise.reject(listenError(err, o.adminPort, 'admin API')));
      },
      drain() {},
      async close() {
        await server?.close();
      },
    };
    return {
      inProcess,
      snapshot: first.snapshot,
      storeLabel: label,
      revision,
      bootstrapKey: boot?.key,
      imported,
      admin,
      close,
    };
  } catch (err) {
    report(ctx, `control store: ${messageOf(err)}`);
    await close().catch(() => undefined);
    return 1;
  }
}
