/**
 * The extproc gRPC server: Authorization/Check and Health, plus whatever other Envoy services
 * (ext_proc, access logs) are registered through `extraServices`.
 */
import * as grpc from '@grpc/grpc-js';
import type { SnapshotSource } from '../../core/config/snapshot.ts';
import type { Authorizer } from '../../core/decision/types.ts';
import type { Logger } from 'pino';
import type { DecisionMetrics } from '../../core/decision/metrics.ts';
import { loadEnvoyProtos } from '../../../protos/envoy-protos.ts';
import { registerAuthorizationService } from './authorization-service.ts';
import { registerHealthService } from './health-service.ts';

export interface ExtprocServerOptions {
  readonly host?: string;
  /** 0 = ephemeral. Default 50051. */
  readonly port?: number;
  readonly authorizer: Authorizer;
  readonly source: SnapshotSource;
  readonly logger: Logger;
  readonly metrics?: DecisionMetrics;
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
  registerAuthorizationService(server, protos, opts);
  const notify = registerHealthService(server, protos, {
    status: (service) => {
      if (service !== '' && service !== 'envoy.service.auth.v3.Authorization') return 'SERVICE_UNKNOWN';
      return !draining && opts.source.current() ? 'SERVING' : 'NOT_SERVING';
    },
  });
  const unsubscribe = opts.source.onSwap(() => notify());
  for (const register of opts.extraServices ?? []) register(server, protos);

  const host = opts.host ?? '0.0.0.0';
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 50051}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  opts.logger.info({ port }, 'extproc gRPC listening');

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
    },
  };
}
