/**
 * The admin app on a Node listener (HTTP, or HTTPS with --tls-cert/--tls-key). A plaintext
 * listener on anything but loopback is refused unless the operator says `insecure`: admin calls
 * carry bearer credentials and provider tokens.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export class PlaintextAdminListenerError extends Error {
  override readonly name = 'PlaintextAdminListenerError';
}

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  /** PEM contents. */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined;
  readonly insecure?: boolean;
}

export interface AdminServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function listenAdmin(fetch: (req: Request) => Response | Promise<Response>, o: AdminServerOptions): Promise<AdminServer> {
  if (!o.tls && !isLoopbackHost(o.host) && !o.insecure) {
    throw new PlaintextAdminListenerError(
      `refusing to serve the admin API without TLS on ${o.host}: bearer tokens and provider keys would cross the network in clear; give --tls-cert and --tls-key, listen on loopback, or pass --insecure`,
    );
  }
  const listener = getRequestListener(fetch);
  const server: Server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, listener) : createHttpServer(listener);
  // Bounds what a slow client can hold (the body limit bounds what a fast one can send).
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `${o.tls ? 'https' : 'http'}://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
