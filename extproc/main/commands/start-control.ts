/**
 * The control plane inside `voicegate start` (issue 11 point 8): the control store — PostgreSQL
 * with --database/DATABASE_URL (VOICEGATE_KEK required), otherwise PGlite under --data-dir with
 * the development KEK beside it —, the admin API on --host:--admin-port, and the snapshot
 * publisher whose first sink is the edge's own source (components/in-process-snapshot.ts). With
 * --nats/NATS_URL a second sink puts each revision into the NATS KV bucket --config-bucket, as
 * `voicegate control` does, and GET /admin/v1/snapshot serves the pods' HTTP fallback, so separate
 * `voicegate edge` pods can follow this process; the in-process edge keeps its in-process source.
 *
 * The provider tokens travel sealed under the snapshot key. Pods need the same one: the key of
 * --snapshot-key-file / VOICEGATE_SNAPSHOT_KEY, or on PGlite a development key beside the data
 * (path printed). On PostgreSQL with NATS an explicit key is required (exit 2); on PostgreSQL
 * without NATS and without one, the key exists only in this process's memory and no snapshot is
 * served (no pod could open it).
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
import { ensureDevKek } from '../../adapters/files/dev-kek.ts';
import { keyringFromEnv } from '../../adapters/files/kek-source.ts';
import { openPgControlStore, openPgliteControlStore, type OpenedControlStore } from '../../adapters/control-store/open-store.ts';
import { resolveSecret } from '../../adapters/files/secrets.ts';
import { loadStartConfigFile, type StartConfigFile } from '../../adapters/files/start-config.ts';
import { queryUsageBetween } from '../../adapters/postgres/usage-query.ts';
import { mountSnapshotRoute } from '../../adapters/admin-api/snapshot-route.ts';
import { ensureDevSnapshotKey } from '../../adapters/files/dev-snapshot-key.ts';
import { readKeyringFile } from '../../adapters/files/keyring-file.ts';
import { natsSnapshotPublisher } from '../../adapters/nats/snapshot-publisher.ts';
import { parseKekSpec } from '../../core/control/kek.ts';
import { snapshotObjectBucket } from '../../core/control/snapshot-entry.ts';
import type { Snapshot, SnapshotSource } from '../../core/config/snapshot.ts';
import { Keyring } from '../../core/control/envelope.ts';
import { IdentityVerifier } from '../../core/identity/identity.ts';
import { report, type RunContext } from '../command.ts';
import { SNAPSHOT_KEY_ENV } from '../config-source.ts';
import { controlPublisherComponent, type NamedSink } from '../components/control-publisher.ts';
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
  /** Publish each revision to NATS KV for separate pods too. */
  readonly nats?: string | undefined;
  readonly configBucket: string;
  readonly snapshotKeyFile?: string | undefined;
  /** Subjects besides administrators that may read GET /admin/v1/snapshot. */
  readonly podSubject: readonly string[];
}

/** Where pods find what they need to follow this process; undefined when they cannot. */
export interface PodFeed {
  /** The NATS KV bucket, when --nats is set. */
  readonly bucket: string | undefined;
  /** `--snapshot-key-file PATH` for pods, or the variable naming it. */
  readonly key: string;
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
  readonly pods: PodFeed | undefined;
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

/** --snapshot-key-file, else VOICEGATE_SNAPSHOT_KEY (the key list, or file:PATH): the pods' format. */
async function explicitSnapshotKey(ctx: RunContext, o: EmbeddedControlFlags): Promise<{ keyring: Keyring; hint: string } | undefined> {
  if (o.snapshotKeyFile !== undefined) return { keyring: await readKeyringFile(o.snapshotKeyFile, '--snapshot-key-file'), hint: `--snapshot-key-file ${o.snapshotKeyFile}` };
  const fromEnv = ctx.env[SNAPSHOT_KEY_ENV];
  if (fromEnv === undefined || fromEnv.trim() === '') return undefined;
  if (fromEnv.startsWith('file:')) {
    const path = fromEnv.slice('file:'.length);
    return { keyring: await readKeyringFile(path, `${SNAPSHOT_KEY_ENV} file`), hint: `--snapshot-key-file ${path}` };
  }
  return { keyring: new Keyring(parseKekSpec(fromEnv, SNAPSHOT_KEY_ENV)), hint: `${SNAPSHOT_KEY_ENV} (the same value)` };
}

interface StoreAndKeys {
  readonly opened: OpenedControlStore;
  readonly pool?: pg.Pool;
  readonly kek: Keyring;
  readonly label: string;
  readonly snapshotKey: Keyring;
  /** How pods get the snapshot key; undefined for a key only this process knows. */
  readonly keyHint: string | undefined;
}

async function openStore(ctx: RunContext, o: EmbeddedControlFlags): Promise<StoreAndKeys | number> {
  let kek: Keyring | undefined;
  let explicit: Awaited<ReturnType<typeof explicitSnapshotKey>>;
  try {
    kek = await keyringFromEnv(ctx.env);
    explicit = await explicitSnapshotKey(ctx, o);
  } catch (err) {
    report(ctx, messageOf(err));
    return 2;
  }
  if (o.database !== undefined) {
    if (!kek) {
      report(ctx, 'the control plane on PostgreSQL (--database/DATABASE_URL) needs VOICEGATE_KEK (kid:BASE64 of 32 bytes, or file:PATH); or pass --control off to take accounts and models from the file');
      return 2;
    }
    // Pods following NATS must open the tokens: a key of this process alone would be useless to them.
    if (o.nats !== undefined && !explicit) {
      report(ctx, `the control plane on PostgreSQL with NATS (--nats/NATS_URL) needs the pods' snapshot key: --snapshot-key-file FILE or ${SNAPSHOT_KEY_ENV} (kid:BASE64 of 32 bytes, or file:PATH); the development one is for the embedded PGlite only`);
      return 2;
    }
    // Without NATS and a key, the tokens reach the in-process edge under a key that lives and dies with this process.
    const snapshotKey = explicit?.keyring ?? new Keyring([{ id: 'start-ephemeral', key: randomBytes(32) }]);
    const pool = new pg.Pool({ connectionString: o.database, max: 5, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS });
    // An idle client's error (server restart) must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    try {
      return { opened: await openPgControlStore(pool, { keyring: kek }), pool, kek, label: 'PostgreSQL', snapshotKey, keyHint: explicit?.hint };
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
  let snapshot = explicit;
  if (!snapshot) {
    // As `voicegate control` on PGlite: a laptop's pods point --snapshot-key-file at the printed path.
    const dev = await ensureDevSnapshotKey(dirname(resolve(o.dataDir)));
    report(ctx, `warning: ${dev.warning}`);
    snapshot = { keyring: dev.keyring, hint: `--snapshot-key-file ${dev.path}` };
  }
  return { opened: await openPgliteControlStore({ keyring: kek, dataDir: o.dataDir }), kek, label: `PGlite ${o.dataDir}`, snapshotKey: snapshot.keyring, keyHint: snapshot.hint };
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
  const { opened, pool, kek, label, snapshotKey, keyHint } = store;
  const cs = opened.store;
  let publisherClose: (() => Promise<void>) | undefined;
  let closed: Promise<void> | undefined;
  // Connects on the first publish and retries with backoff: NATS being away never stops start.
  const nats = o.nats !== undefined ? natsSnapshotPublisher({ servers: o.nats, bucket: o.configBucket, objectBucket: snapshotObjectBucket(o.configBucket) }) : undefined;
  const close = () =>
    (closed ??= (async () => {
      await publisherClose?.();
      await nats?.close();
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

    const inProcess = inProcessSnapshot({
      local: file.local,
      snapshotKey,
      origin: `control:${pool ? 'postgresql' : 'pglite'}`,
      readLocal: async () => (await loadStartConfigFile(o.config, ctx.env)).local,
      logger,
    });
    const sinks: NamedSink[] = [inProcess.sink, ...(nats ? [{ name: 'nats', deliver: async (revision: number, text: string) => void (await nats.publish(revision, text)) }] : [])];
    const publisher = controlPublisherComponent({ store: cs, kek, snapshotKey, sinks, logger });
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
      // Only a key pods hold makes the snapshot worth serving.
      ...(keyHint !== undefined ? { mount: (a: Parameters<typeof mountSnapshotRoute>[0]) => mountSnapshotRoute(a, { latest: () => publisher.latest(), podSubjects: o.podSubject }) } : {}),
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
      pods: keyHint !== undefined ? { bucket: nats ? o.configBucket : undefined, key: keyHint } : undefined,
      admin,
      close,
    };
  } catch (err) {
    report(ctx, `control store: ${messageOf(err)}`);
    await close().catch(() => undefined);
    return 1;
  }
}
