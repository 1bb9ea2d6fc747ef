/**
 * The listening components: the embedded edge, the gRPC server Envoy calls and the side port.
 * Each knows its port, so a failed bind reads `port 8080 (edge) is already in use`.
 */
import { startEdge, type EdgeHandle, type EdgeOptions } from '../../adapters/edge/server.ts';
import { PlaintextListenerError, startExtprocServer, type ExtprocServer, type ExtprocServerOptions } from '../../adapters/envoy/server.ts';
import { TlsFilesError } from '../../adapters/envoy/tls-files.ts';
import { startSidePort, type SidePortOptions } from '../../adapters/http/side-port.ts';
import { listenError, StartError, type Component } from '../lifecycle.ts';

/** Grace for in-flight gRPC calls once closing, unless the command gives its drain window. */
const GRPC_CLOSE_GRACE_MS = 2_000;

export interface DrainOptions {
  /**
   * `--drain-timeout`: once the listener stopped accepting, how long in-flight exchanges (REST,
   * SSE, gRPC calls and streams) have to finish before they are cut.
   */
  readonly drainTimeoutMs?: number;
}

export interface EdgeComponent extends Component {
  /** Once started. */
  readonly url: string;
}

export function edgeComponent(opts: EdgeOptions, drain: DrainOptions = {}): EdgeComponent {
  let handle: EdgeHandle | undefined;
  return {
    name: 'edge',
    get url() {
      return handle?.url ?? '';
    },
    async start() {
      handle = await startEdge(opts).catch((err: unknown) => Promise.reject(listenError(err, opts.port, 'edge')));
    },
    // Not ready on the edge's own /readyz (the side port's is the side port component's); it keeps
    // accepting until close, so the load balancer has the drain delay to notice.
    drain() {
      handle?.drain();
    },
    async close() {
      await handle?.close({ graceMs: drain.drainTimeoutMs ?? 0 });
    },
  };
}

export interface GrpcComponent extends Component {
  readonly port: number;
}

export function grpcComponent(opts: ExtprocServerOptions, drain: DrainOptions = {}): GrpcComponent {
  let server: ExtprocServer | undefined;
  return {
    name: 'gRPC server',
    get port() {
      return server?.port ?? 0;
    },
    async start() {
      server = await startExtprocServer(opts).catch((err: unknown) => {
        // Both already read as the one line an operator needs (which flag, which file).
        if (err instanceof PlaintextListenerError || err instanceof TlsFilesError) return Promise.reject(new StartError(err.message, { cause: err }));
        if (opts.socketPath) return Promise.reject(new StartError(`cannot listen on the Unix socket ${opts.socketPath}: ${(err as Error).message}`, { cause: err }));
        return Promise.reject(listenError(err, opts.port, 'gRPC'));
      });
    },
    drain() {
      server?.drain();
    },
    async close() {
      await server?.close(drain.drainTimeoutMs ?? GRPC_CLOSE_GRACE_MS);
    },
  };
}

export interface SidePortComponent extends Component {
  readonly port: number;
}

/** The side port; `/readyz` answers 503 from the moment the process drains. */
export function sidePortComponent(opts: SidePortOptions): SidePortComponent {
  let side: { port: number; close(): Promise<void> } | undefined;
  let draining = false;
  return {
    name: 'side port',
    get port() {
      return side?.port ?? 0;
    },
    async start() {
      const ready = () => !draining && opts.ready();
      side = await startSidePort({ ...opts, ready }).catch((err: unknown) => Promise.reject(listenError(err, opts.port, 'side port, --http-port')));
    },
    drain() {
      draining = true;
    },
    async close() {
      await side?.close();
    },
  };
}

/** The gRPC server's TLS files from --tls-cert/--tls-key/--tls-ca: all three, or none (then a string saying what is missing). */
export function serverTlsFromFlags(o: { tlsCert?: string | undefined; tlsKey?: string | undefined; tlsCa?: string | undefined }): { cert: string; key: string; ca: string } | undefined | string {
  const given = [o.tlsCert, o.tlsKey, o.tlsCa].filter((v) => v !== undefined).length;
  if (given === 0) return undefined;
  if (o.tlsCert === undefined || o.tlsKey === undefined || o.tlsCa === undefined) return '--tls-cert, --tls-key and --tls-ca are given together (mutual TLS needs all three)';
  return { cert: o.tlsCert, key: o.tlsKey, ca: o.tlsCa };
}
