/**
 * The listening components: the embedded edge, the gRPC server Envoy calls and the side port.
 * Each knows its port, so a failed bind reads `port 8080 (edge) is already in use`.
 */
import { startEdge, type EdgeHandle, type EdgeOptions } from '../../adapters/edge/server.ts';
import { startExtprocServer, type ExtprocServer, type ExtprocServerOptions } from '../../adapters/envoy/server.ts';
import { startSidePort, type SidePortOptions } from '../../adapters/http/side-port.ts';
import { listenError, type Component } from '../lifecycle.ts';

/** Grace for in-flight gRPC calls once closing. */
const GRPC_CLOSE_GRACE_MS = 2_000;

export interface EdgeComponent extends Component {
  /** Once started. */
  readonly url: string;
}

export function edgeComponent(opts: EdgeOptions): EdgeComponent {
  let handle: EdgeHandle | undefined;
  return {
    name: 'edge',
    get url() {
      return handle?.url ?? '';
    },
    async start() {
      handle = await startEdge(opts).catch((err: unknown) => Promise.reject(listenError(err, opts.port, 'edge')));
    },
    // Readiness is the side port's; open connections keep being served until close.
    drain() {},
    async close() {
      await handle?.close();
    },
  };
}

export interface GrpcComponent extends Component {
  readonly port: number;
}

export function grpcComponent(opts: ExtprocServerOptions): GrpcComponent {
  let server: ExtprocServer | undefined;
  return {
    name: 'gRPC server',
    get port() {
      return server?.port ?? 0;
    },
    async start() {
      server = await startExtprocServer(opts).catch((err: unknown) => Promise.reject(listenError(err, opts.port, 'gRPC')));
    },
    drain() {
      server?.drain();
    },
    async close() {
      await server?.close(GRPC_CLOSE_GRACE_MS);
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
