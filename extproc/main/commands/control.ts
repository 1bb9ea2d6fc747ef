/**
 * `voicegate control`: the control plane's admin API (`/admin/v1/…`, /healthz, /readyz) over the
 * control store — PostgreSQL with --database/DATABASE_URL (VOICEGATE_KEK required), otherwise an
 * embedded PGlite under --data-dir with a development KEK created beside it (printed warning).
 * On a store that never had a service account it creates `bootstrap-admin` and prints its key
 * once, on stdout; nothing else ever shows it.
 *
 * It also publishes the pods' snapshot (components/control-publisher.ts): built from each new
 * store revision with the provider tokens re-sealed under the snapshot key (--snapshot-key-file /
 * VOICEGATE_SNAPSHOT_KEY; a development one beside the data on PGlite), put into NATS KV with
 * --nats, and served at GET /admin/v1/snapshot for pods whose NATS is away.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import pg from 'pg';
import { createAdminApp, type UsageQuery } from '../../adapters/admin-api/app.ts';
import { dataPlaneCheck } from '../../adapters/admin-api/data-plane-check.ts';
import { mountSnapshotRoute } from '../../adapters/admin-api/snapshot-route.ts';
import { ensureDevSnapshotKey } from '../../adapters/files/dev-snapshot-key.ts';
import { readKeyringFile } from '../../adapters/files/keyring-file.ts';
import { natsSnapshotPublisher } from '../../adapters/nats/snapshot-publisher.ts';
import { Keyring } from '../../core/control/envelope.ts';
import { parseKekSpec } from '../../core/control/kek.ts';
import { snapshotObjectBucket } from '../../core/control/snapshot-entry.ts';
import { BOOTSTRAP_SUBJECT, bootstrapAdmin } from '../../adapters/admin-api/bootstrap.ts';
import { isLoopbackHost, listenAdmin, type AdminServer } from '../../adapters/admin-api/server.ts';
import { ensureDevKek } from '../../adapters/files/dev-kek.ts';
import { keyringFromEnv } from '../../adapters/files/kek-source.ts';
import { openPgControlStore, openPgliteControlStore, type OpenedControlStore } from '../../adapters/control-store/open-store.ts';
import { resolveSecret } from '../../adapters/files/secrets.ts';
import { queryUsageBetween } from '../../adapters/postgres/usage-query.ts';
import type { IssuerConfig } from '../../core/config/snapshot.ts';
import { IdentityVerifier } from '../../core/identity/identity.ts';
import { closing, defineCommand, loadConfig, report, serve, type RunContext } from '../command.ts';
import { controlPublisherComponent, type NamedSink } from '../components/control-publisher.ts';
import { SNAPSHOT_KEY_ENV } from '../config-source.ts';
import { createLogger } from '../logger.ts';
import { DATABASE_CONNECT_TIMEOUT_MS } from '../usage-pipeline.ts';
import { CONTROL_OPTIONS } from '../options.ts';
import type { Component } from '../lifecycle.ts';
import type { Parsed } from '../flags.ts';

type ControlFlags = Parsed<typeof CONTROL_OPTIONS>;

function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(at + 1)) };
}

interface Opened {
  readonly opened: OpenedControlStore;
  readonly pool?: pg.Pool;
  readonly kek: Keyring;
  readonly snapshotKey: Keyring;
}

/** --snapshot-key-file, else VOICEGATE_SNAPSHOT_KEY (the key list, or file:PATH); the pods' format. */
async function snapshotKeyFromFlags(ctx: RunContext, o: ControlFlags): Promise<Keyring | undefined> {
  if (o.snapshotKeyFile !== undefined) return readKeyringFile(o.snapshotKeyFile, '--snapshot-key-file');
  const fromEnv = ctx.env[SNAPSHOT_KEY_ENV];
  if (fromEnv === undefined || fromEnv.trim() === '') return undefined;
  return fromEnv.startsWith('file:') ? readKeyringFile(fromEnv.slice('file:'.length), `${SNAPSHOT_KEY_ENV} file`) : new Keyring(parseKekSpec(fromEnv, SNAPSHOT_KEY_ENV));
}

async function openStore(ctx: RunContext, o: ControlFlags): Promise<Opened | number> {
  const keyring = await keyringFromEnv(ctx.env);
  let snapshotKey: Keyring | undefined;
  try {
    snapshotKey = await snapshotKeyFromFlags(ctx, o);
  } catch (err) {
    report(ctx, (err as Error).message);
    return 2;
  }
  if (o.database !== undefined) {
    if (!keyring) {
      report(ctx, 'the control plane on PostgreSQL needs VOICEGATE_KEK (kid:BASE64 of 32 bytes, or file:PATH); the development KEK is for the embedded PGlite only');
      return 2;
    }
    if (!snapshotKey) {
      report(ctx, `the control plane on PostgreSQL needs the pods' snapshot key: --snapshot-key-file FILE or ${SNAPSHOT_KEY_ENV} (kid:BASE64 of 32 bytes, or file:PATH); the development one is for the embedded PGlite only`);
      return 2;
    }
    const pool = new pg.Pool({ connectionString: o.database, max: 5, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS });
    // An idle client's error (server restart) must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    try {
      return { opened: await openPgControlStore(pool, { keyring }), pool, kek: keyring, snapshotKey };
    } catch (err) {
      await pool.end();
      throw err;
    }
  }
  let ring = keyring;
  if (!ring) {
    const dev = await ensureDevKek(dirname(resolve(o.dataDir)));
    report(ctx, `warning: ${dev.warning}`);
    ring = dev.keyring;
  }
  if (!snapshotKey) {
    const dev = await ensureDevSnapshotKey(dirname(resolve(o.dataDir)));
    report(ctx, `warning: ${dev.warning}`);
    snapshotKey = dev.keyring;
  }
  return { opened: await openPgliteControlStore({ keyring: ring, dataDir: o.dataDir }), kek: ring, snapshotKey };
}

export const controlCommand = defineCommand('the control plane: admin API over PostgreSQL, or PGlite without DATABASE_URL', CONTROL_OPTIONS, async (o, ctx) => {
  const { host, port } = splitListen(o.listen);
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    report(ctx, '--tls-cert and --tls-key are given together');
    return 2;
  }
  if (o.tlsCert === undefined && !isLoopbackHost(host) && !o.insecure) {
    report(ctx, `refusing to serve the admin API without TLS on ${host}: bearer tokens and provider keys would cross the network in clear; give --tls-cert and --tls-key, listen on loopback, or pass --insecure`);
    return 2;
  }
  let issuers: readonly IssuerConfig[] = [];
  if (o.config !== undefined) {
    const snapshot = await loadConfig(ctx, o.config);
    if (!snapshot) return 1;
    issuers = snapshot.issuers;
  } else {
    report(ctx, 'no --config: admin JWTs cannot be verified, only vg_ service keys authenticate');
  }
  let tls: { cert: string; key: string } | undefined;
  try {
    tls = o.tlsCert !== undefined && o.tlsKey !== undefined ? { cert: await readFile(o.tlsCert, 'utf8'), key: await readFile(o.tlsKey, 'utf8') } : undefined;
  } catch (err) {
    report(ctx, `cannot read the TLS files: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    return 2;
  }
  const opened = await openStore(ctx, o);
  if (typeof opened === 'number') return opened;
  const { store } = opened.opened;
  const pool = opened.pool;

  // A bootstrap key is only worth printing while its subject is an administrator.
  if (o.bootstrap === 'auto' && o.adminSubject.includes(BOOTSTRAP_SUBJECT)) {
    const boot = await bootstrapAdmin(store);
    if (boot) {
      ctx.stdout(
        [
          '',
          `voicegate control: created the administrator service account ${boot.subject}. Its key, shown this once and never again:`,
          '',
          `    ${boot.key}`,
          '',
          'Store it now (e.g. a password manager). Use it as Authorization: Bearer <key>; create your own',
          'administrators, then revoke it: DELETE /admin/v1/service-accounts/bootstrap-admin/keys/<id>.',
          '',
        ].join('\n'),
      );
    }
  }

  const baseDir = o.config !== undefined ? dirname(resolve(o.config)) : process.cwd();
  const usage: UsageQuery | undefined = pool ? ({ by, from, to }) => queryUsageBetween(pool, by, from, to) : undefined;
  const logger = createLogger({ name: 'voicegate-control', level: ctx.env['LOG_LEVEL'] });
  const nats = o.nats ? natsSnapshotPublisher({ servers: o.nats, bucket: o.configBucket, objectBucket: snapshotObjectBucket(o.configBucket) }) : undefined;
  const sinks: NamedSink[] = nats ? [{ name: 'nats', deliver: async (revision, text) => void (await nats.publish(revision, text)) }] : [];
  const publisher = controlPublisherComponent({ store, kek: opened.kek, snapshotKey: opened.snapshotKey, sinks, logger });
  const app = createAdminApp({
    store,
    verifier: new IdentityVerifier(issuers),
    adminRole: o.adminRole,
    adminSubjects: o.adminSubject,
    usage,
    resolveSecret: (ref) => resolveSecret(ref, baseDir, ctx.env),
    // A write the publisher could not turn into a snapshot is refused rather than left for the
    // pods to ignore: they would keep the previous revision while the API said 201.
    checkConfiguration: dataPlaneCheck({ kek: opened.kek, snapshotKey: opened.snapshotKey }),
    ready: async () => {
      await store.currentRevision();
      return true;
    },
    mount: (a) => mountSnapshotRoute(a, { latest: () => publisher.latest(), podSubjects: o.podSubject }),
  });
  // A change made through this API is published at once; the poll still catches commits made by
  // another control plane on the same database.
  const fetchAndNudge = async (req: Request): Promise<Response> => {
    const res = await app.fetch(req);
    if (req.method !== 'GET' && req.method !== 'HEAD' && res.status < 300) publisher.nudge();
    return res;
  };
  let server: AdminServer | undefined;
  const listener: Component = {
    name: 'admin API',
    async start() {
      server = await listenAdmin(fetchAndNudge, { host, port, tls, insecure: o.insecure });
    },
    drain() {},
    async close() {
      await server?.close();
    },
  };
  const components: Component[] = [
    closing('control store', async () => {
      await opened.opened.close();
      await pool?.end();
    }),
    closing('snapshot publisher (NATS)', () => nats?.close()),
    publisher,
    listener,
  ];
  return serve(ctx, components, o.drainDelay, () => {
    report(ctx, `admin API on ${server?.url}/admin/v1 (OpenAPI: ${server?.url}/admin/v1/openapi.json), store: ${pool ? 'PostgreSQL' : `PGlite ${o.dataDir}`}, snapshot: ${nats ? `NATS ${o.configBucket}` : 'HTTP only (no --nats)'}`);
  });
});
