/**
 * The extproc gRPC server: Authorization/Check and Health, plus whatever other Envoy services
 * (ext_proc, access logs) are registered through `extraServices`.
 *
 * Check hands out provider keys and the access-log service turns entries into billed spans, so the
 * peer is authenticated on the transport, for every service alike: mutual TLS against a configured
 * CA, or a Unix socket only its owner can open. Plaintext TCP is served on loopback only, unless
 * the operator says `insecure` explicitly.
 */
import * as grpc from '@grpc/grpc-js';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { isIP, createConnection } from 'node:net';
import type { SnapshotSource } from '../../core/config/snapshot.ts';
import type { Authorizer } from '../../core/decision/types.ts';
import type { Logger } from 'pino';
import type { DecisionMetrics } from '../../core/decision/metrics.ts';
import { loadEnvoyProtos } from '../../../protos/envoy-protos.ts';
import { registerAuthorizationService } from './authorization-service.ts';
import { startSlotSweeper, type EnvoyLimits } from './check-admission.ts';
import { registerHealthService } from './health-service.ts';
import { WatchedTlsFiles, type TlsFiles } from './tls-files.ts';

/** Where the server listens without TLS when it may not: the message is the operator's to read. */
export class PlaintextListenerError extends Error {
  override readonly name = 'PlaintextListenerError';
}

/** 127.0.0.0/8, ::1 and `localhost`: addresses no other machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (h.startsWith('::ffff:')) return isLoopbackHost(h.slice('::ffff:'.length));
  return isIP(h) === 4 && h.startsWith('127.');
}

export interface ExtprocServerOptions {
  /** Default 127.0.0.1: reaching the services from elsewhere is a decision, made with `tls`. */
  readonly host?: string;
  /** 0 = ephemeral. Default 50051. */
  readonly port?: number;
  /** Listen on this Unix socket (mode 0600) instead of host:port — the sidecar deployment. */
  readonly socketPath?: string;
  /** Mutual TLS: this server certificate and key; every client must present one issued by `ca`. */
  readonly tls?: Required<TlsFiles> & { readonly reloadIntervalMs?: number };
  /** Serve plaintext on a non-loopback address anyway (warned at start). */
  readonly insecure?: boolean;
  readonly authorizer: Authorizer;
  readonly source: SnapshotSource;
  readonly logger: Logger;
  readonly metrics?: DecisionMetrics;
  /**
   * Limits under Envoy: Check takes each allowed request's units and the slot table (shared with
   * the ext_proc and access-log services) releases them (check-admission.ts). Absent, Check takes none.
   */
  readonly limits?: EnvoyLimits;
  /** Registers more services on the same server (ext_proc, access-log service). */
  readonly extraServices?: ReadonlyArray<(server: grpc.Server, protos: grpc.GrpcObject) => void>;
}

export interface ExtprocServer {
  readonly port: number;
  /** Marks the server NOT_SERVING (health), so Envoy drains it before `close()`. */
  drain(): void;
  /** Graceful shutdown: stops accepting, lets in-flight calls finish (bounded), then forces. */
  close(graceMs?: number): Promise<void>;
}

export async function startExtprocServer(opts: ExtprocServerOptions): Promise<ExtprocServer> {
  const protos = loadEnvoyProtos();
  const server = new grpc.Server({
    // Envoy keeps one long-lived HTTP/2 connection per worker; keepalive detects dead peers.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    // Channelz (gRPC's introspection service) is never exposed here; its per-call bookkeeping is pure cost.
    'grpc.enable_channelz': 0,
  });
  let draining = false;
  registerAuthorizationService(server, protos, { ...opts, snapshot: () => opts.source.current() });
  const notify = registerHealthService(server, protos, {
    status: (service) => {
      if (service !== '' && service !== 'envoy.service.auth.v3.Authorization') return 'SERVICE_UNKNOWN';
      return !draining && opts.source.current() ? 'SERVING' : 'NOT_SERVING';
    },
  });
  const unsubscribe = opts.source.onSwap(() => notify());
  for (const register of opts.extraServices ?? []) register(server, protos);

  const host = opts.host ?? '127.0.0.1';
  const address = opts.socketPath ? `unix:${opts.socketPath}` : `${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 50051}`;
  if (!opts.tls && !opts.socketPath && !isLoopbackHost(host)) {
    if (!opts.insecure) {
      throw new PlaintextListenerError(
        `refusing to serve the gRPC services without TLS on ${host}: anyone who reaches it gets provider keys and can forge usage; give --tls-cert, --tls-key and --tls-ca, listen on --socket, or pass --insecure`,
      );
    }
    opts.logger.warn({ host }, 'extproc gRPC serves plaintext on a non-loopback address (--insecure): any client that reaches it can read provider keys and forge usage');
  }
  const tlsFiles = opts.tls
    ? new WatchedTlsFiles(opts.tls, {
        ...(opts.tls.reloadIntervalMs !== undefined ? { intervalMs: opts.tls.reloadIntervalMs } : {}),
        onReload: () => opts.logger.info('extproc gRPC TLS certificates reloaded'),
        onRejected: (err) => opts.logger.error({ err: err.message }, 'extproc gRPC TLS files changed but cannot be used; keeping the previous certificates'),
      })
    : undefined;
  // grpc-js names the first parameter the CA provider but passes it on as the identity provider;
  // one provider serves both, so the order cannot matter. `true`: a client certificate is required.
  const credentials = tlsFiles ? grpc.experimental.createCertificateProviderServerCredentials(tlsFiles, tlsFiles, true) : grpc.ServerCredentials.createInsecure();
  if (opts.socketPath) await removeStaleSocket(opts.socketPath);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((err: unknown) => {
    tlsFiles?.close();
    throw err;
  });
  const stopSweeper = opts.limits ? startSlotSweeper(opts.limits.slots) : undefined;
  // Owner only: the socket is the peer authentication, so no other user of the machine may connect.
  if (opts.socketPath) chmodSync(opts.socketPath, 0o600);
  opts.logger.info({ ...(opts.socketPath ? { socket: opts.socketPath } : { host, port }), tls: Boolean(tlsFiles) }, 'extproc gRPC listening');

  return {
    port,
    drain() {
      draining = true;
      notify();
    },
    async close(graceMs = 5_000) {
      draining = true;
      notify();
      unsubscribe();
      tlsFiles?.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      // No stream can release what is left once the server is down; the grants go back after this.
      stopSweeper?.();
      opts.limits?.slots.releaseAll();
    },
  };
}

/**
 * A socket file left by a process that died is removed, so a restart can bind; a socket someone
 * still answers on, or any other kind of file, is left alone (the bind then fails with its error).
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!alive) unlinkSync(path);
}
