/**
 * The small HTTP side port of a process: `/healthz`, `/readyz`, `/metrics`, plus mounted handlers
 * (the usage endpoint). Kept apart from the data plane so scraping never competes with traffic.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export type Mounted = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export interface SidePortOptions {
  /** Default 127.0.0.1: metrics and usage are reachable from elsewhere only when the command's --host says so. */
  readonly host?: string;
  readonly port: number;
  readonly registry: Registry;
  readonly ready: () => boolean;
  readonly mounts?: readonly Mounted[];
}

export async function startSidePort(opts: SidePortOptions): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    void route(req, res, opts).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"internal","message":"internal error"}}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function route(req: IncomingMessage, res: ServerResponse, opts: SidePortOptions): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path === '/healthz') return json(res, 200, { status: 'ok' });
  if (path === '/readyz') return opts.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not_ready' });
  if (path === '/metrics') {
    const body = await opts.registry.metrics();
    res.writeHead(200, { 'content-type': opts.registry.contentType });
    res.end(body);
    return;
  }
  for (const m of opts.mounts ?? []) if (await m(req, res)) return;
  json(res, 404, { error: { code: 'not_found', message: `no route ${path}` } });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
