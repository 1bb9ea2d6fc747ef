/**
 * The embedded edge: one Node process doing what envoy/envoy.yaml does — own health routes,
 * ext_authz on every other request (in process or over gRPC), Envoy's mutation semantics, then a
 * streaming relay for REST, SSE and WebSocket. Transport code lives in rest-proxy.ts and
 * ws-proxy.ts; decisions and plans are pure functions in the modules they import.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { Authorizer, RouteKind } from '../../core/decision/types.ts';
import type { SnapshotSource } from '../../core/config/snapshot.ts';
import { ClientAbortedError, readBodyPrefix, type BodyPrefix } from './body-prefix.ts';
import { admit, type Arrival } from './admit.ts';
import { routeTraits } from '../../core/exchange/check-input.ts';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import { flattenHeaders, forwardedFields } from '../../core/exchange/headers.ts';
import { createUpstreamAgents, proxyRest, writeLocal } from './rest-proxy.ts';
import { gatewayError, healthResponse, readinessResponse } from '../../core/exchange/responses.ts';
import { createWebSocketProxy, writeRawResponse } from './ws-proxy.ts';

export interface EdgeOptions {
  /** Listen address; default `0.0.0.0` (public listener, as Envoy's). */
  readonly host?: string;
  /** Default 8080; 0 picks an ephemeral port. */
  readonly port?: number;
  readonly source: SnapshotSource;
  readonly authorizer: Authorizer;
  readonly observe?: ExchangeObserverFactory;
  readonly logger?: Logger;
  /** Bound on connect + response head (REST/SSE) or the opening handshake (WebSocket). Default 15 s. */
  readonly upstreamTimeoutMs?: number;
  /**
   * After the response head (REST/SSE) or the handshake (WebSocket): end the exchange when no byte
   * or frame moved in either direction for this long. Default {@link DEFAULT_STREAM_IDLE_TIMEOUT_MS};
   * 0 disables it, as `0s` does in Envoy.
   */
  readonly streamIdleTimeoutMs?: number;
  /** Body bytes the decision reads on TTS JSON routes; default the snapshot's, else 64 KiB. */
  readonly maxDecisionBodyBytes?: number;
  /** WebSocket backpressure thresholds (bytes queued on the writing side). */
  readonly wsHighWaterBytes?: number;
  readonly wsLowWaterBytes?: number;
}

export interface EdgeHandle {
  /** `http://host:port`, with a loopback host when listening on every address. */
  readonly url: string;
  readonly port: number;
  /** Stops listening, closes live WebSockets with 1001 and cuts remaining connections. */
  close(): Promise<void>;
}

/** Envoy's route timeout default; SSE and WebSocket bodies are not bounded by it here. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_DECISION_BODY_BYTES = 64 * 1024;
/**
 * envoy/envoy.yaml: `idle_timeout: 300s` on every SSE and WebSocket route (which set `timeout: 0s`)
 * and the connection manager's `stream_idle_timeout: 300s` for the rest. Envoy counts any bytes on
 * the stream as activity, WebSocket pings and pongs included, and so does the edge.
 */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 300_000;

function pathOnly(pathWithQuery: string): string {
  const q = pathWithQuery.indexOf('?');
  return q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
}

/** RFC 6455 §4.2.1: what ws would refuse after we had already opened the upstream. */
function validWebSocketHandshake(req: IncomingMessage): boolean {
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  return (
    req.method === 'GET' &&
    typeof key === 'string' &&
    /^[+/0-9A-Za-z]{22}==$/.test(key) &&
    (version === '13' || version === '8')
  );
}

/** Starts the edge and resolves once it listens. */
export async function startEdge(opts: EdgeOptions): Promise<EdgeHandle> {
  const logger = opts.logger ?? pino({ level: 'silent' });
  const timeoutMs = opts.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
  const idleTimeoutMs = opts.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
  const agents = createUpstreamAgents();
  const ws = createWebSocketProxy({
    logger,
    ...(opts.wsHighWaterBytes !== undefined ? { highWaterBytes: opts.wsHighWaterBytes } : {}),
    ...(opts.wsLowWaterBytes !== undefined ? { lowWaterBytes: opts.wsLowWaterBytes } : {}),
  });

  const deps = { authorizer: opts.authorizer, logger, ...(opts.observe ? { observe: opts.observe } : {}) };

  function arrival(req: IncomingMessage, routeKind: RouteKind): Arrival {
    const method = req.method ?? 'GET';
    const pathWithQuery = req.url ?? '/';
    // The edge listens in plain HTTP; TLS, when any, ends in front of it.
    const scheme = 'http';
    const forwarded = forwardedFields(req.headersDistinct['x-forwarded-for'], req.socket.remoteAddress, scheme);
    const headers: Record<string, string> = Object.assign(flattenHeaders(req.headers), forwarded);
    const callerHeaders: Record<string, readonly string[] | undefined> = { ...req.headersDistinct };
    for (const [name, value] of Object.entries(forwarded)) callerHeaders[name] = [value];
    const given = headers['x-request-id'];
    const requestId = given && given.length > 0 ? given : randomUUID();
    headers['x-request-id'] = requestId;
    return {
      requestId,
      startedAtMs: Date.now(),
      startHr: process.hrtime.bigint(),
      method,
      pathWithQuery,
      headers,
      routeKind,
      scheme,
      callerHeaders,
    };
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const own = pathOnly(req.url ?? '/');
    if (own === '/healthz') return writeLocal(res, healthResponse());
    if (own === '/readyz') return writeLocal(res, readinessResponse(opts.source.current() !== undefined));

    const traits = routeTraits(req.method ?? 'GET', req.url ?? '/', false);
    const facts = arrival(req, traits.kind);
    const snapshot = opts.source.current();
    let prefix: BodyPrefix | undefined;
    if (traits.sendsBody) {
      const limit = opts.maxDecisionBodyBytes ?? snapshot?.maxDecisionBodyBytes ?? DEFAULT_MAX_DECISION_BODY_BYTES;
      prefix = await readBodyPrefix(req, limit);
    }
    const ok = await admit(deps, {
      facts,
      snapshot,
      ...(prefix ? { prefix } : {}),
      websocket: false,
      gone: () => res.destroyed,
      answer: (r) => writeLocal(res, r),
    });
    if (!ok) return;
    proxyRest({ req, res, ...ok, ...(prefix ? { bodyPrefix: prefix } : {}), timeoutMs, idleTimeoutMs, agents, logger });
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return writeRawResponse(socket, gatewayError(403, 'upgrade_not_allowed', 'Only WebSocket upgrades are supported.'));
    }
    if (!validWebSocketHandshake(req)) {
      return writeRawResponse(socket, gatewayError(400, 'bad_upgrade', 'Malformed WebSocket opening handshake.'));
    }
    const ok = await admit(deps, {
      facts: arrival(req, 'websocket'),
      snapshot: opts.source.current(),
      websocket: true,
      gone: () => socket.destroyed,
      answer: (r) => writeRawResponse(socket, r),
    });
    if (!ok) return;
    ws.proxy({ req, socket, head, ...ok, timeoutMs, idleTimeoutMs });
  }

  const server = http.createServer({
    // Long uploads and streams are bounded by the upstream, not by Node's 300 s request timer.
    requestTimeout: 0,
    noDelay: true,
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    onRequest(req, res).catch((err: unknown) => {
      if (err instanceof ClientAbortedError) return;
      logger.error({ err }, 'edge request failed');
      if (!res.headersSent && !res.destroyed) writeLocal(res, gatewayError(500, 'internal_error', 'Internal gateway error.'));
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch((err: unknown) => {
      logger.error({ err }, 'edge upgrade failed');
      writeRawResponse(socket, gatewayError(500, 'internal_error', 'Internal gateway error.'));
    });
  });

  const host = opts.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  logger.info({ host, port }, 'edge listening');

  return {
    url: `http://${shownHost}:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await ws.close();
      server.closeAllConnections();
      agents.destroy();
      await closed;
    },
  };
}
