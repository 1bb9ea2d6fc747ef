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
import { BodyTimeoutError, ClientAbortedError, readBodyPrefix, type BodyPrefix } from './body-prefix.ts';
import { admit } from './admit.ts';
import type { Exchange } from '../../core/exchange/exchange.ts';
import { routeTraits } from '../../core/exchange/check-input.ts';
import { routeTimeouts } from '../../core/catalogue/endpoints.ts';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import { forwardedFields } from '../../core/exchange/headers.ts';
import { createUpstreamAgents, proxyRest, writeLocal } from './rest-proxy.ts';
import { gatewayError, healthResponse, readinessResponse } from '../../core/exchange/responses.ts';
import { createWebSocketProxy, writeRawResponse } from './ws-proxy.ts';
import { corsVerdict } from '../../core/decision/cors.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../core/limits/ledger.ts';
import { createInFlight } from './in-flight.ts';
import { createSessionRegistry } from './sessions.ts';

export interface EdgeOptions {
  /** Listen address; default `0.0.0.0` (public listener, as Envoy's). */
  readonly host?: string;
  /** Default 8080; 0 picks an ephemeral port. */
  readonly port?: number;
  readonly source: SnapshotSource;
  readonly authorizer: Authorizer;
  readonly observe?: ExchangeObserverFactory;
  readonly logger?: Logger;
  /**
   * Overrides the route timeout of every route that has one (REST: the endpoint spec's, 120 s),
   * measured as Envoy does from the end of the request body until the response is complete. Routes
   * with `timeout: 0s` (SSE, WebSocket) keep none. For tests.
   */
  readonly upstreamTimeoutMs?: number;
  /**
   * Overrides every route's idle bound (the spec's `idle_timeout`, else `stream_idle_timeout`,
   * 300 s): the exchange ends when no byte or frame moved either way for this long; 0 disables it,
   * as `0s` does in Envoy. For tests.
   */
  readonly streamIdleTimeoutMs?: number;
  /** Body bytes the decision reads on TTS JSON routes; default the snapshot's, else 64 KiB. */
  readonly maxDecisionBodyBytes?: number;
  /** WebSocket backpressure thresholds (bytes queued on the writing side). */
  readonly wsHighWaterBytes?: number;
  readonly wsLowWaterBytes?: number;
  /** Largest WebSocket message accepted on either leg; default 16 MiB (the provider's own limit). Larger closes with 1009. */
  readonly wsMaxPayloadBytes?: number;
  /**
   * Longest a WebSocket session or SSE stream lasts, however active (sessions.ts
   * `DEFAULT_MAX_SESSION_MS`, 1 h): the ceiling of the configured `max_session_seconds`; then 1008 / the stream's end.
   */
  readonly maxSessionMs?: number;
  /** How long a WebSocket session or SSE stream may outlive its token (beyond the issuer's clock skew); default 0. */
  readonly sessionTokenGraceMs?: number;
  /** Time a client has to send its complete request head (Node's `headersTimeout`); default 10 s. */
  readonly headersTimeoutMs?: number;
  /** Time a client has to send the body bytes the decision reads; default 10 s, then 408 `request_timeout`. */
  readonly decisionBodyTimeoutMs?: number;
  /** Concurrent client connections this edge accepts (`server.maxConnections`); default 1024. */
  readonly maxConnections?: number;
  /**
   * The admission ledger (core/limits). Default: one of this process's own, granted every unit of
   * each account (single pod); limits are always enforced, there is no switch to turn them off.
   */
  readonly limits?: AdmissionLedger;
}

export interface EdgeHandle {
  /** `http://host:port`, with a loopback host when listening on every address. */
  readonly url: string;
  readonly port: number;
  /**
   * Reports not ready on the edge's own `/readyz` (503) and keeps serving and accepting, so a load
   * balancer notices before connections are refused (the `--drain-delay` between the two).
   */
  drain(): void;
  /**
   * Stops accepting; lets in-flight REST and SSE exchanges finish for up to `graceMs` (default 0:
   * cut at once), then closes live WebSockets with 1001 on both legs, cuts what is left, and
   * resolves once every exchange's observer has ended — its span handed to the sink.
   */
  close(opts?: { readonly graceMs?: number }): Promise<void>;
}

export const DEFAULT_MAX_DECISION_BODY_BYTES = 64 * 1024;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_DECISION_BODY_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 1024;
/** After the window: how long cut exchanges get to end their observers (publish their spans). */
const SPAN_SETTLE_MS = 3_000;

function pathOnly(pathWithQuery: string): string {
  const q = pathWithQuery.indexOf('?');
  return q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
}

/**
 * Whether the request carries anything the decision could take as a token (`Authorization`, or a
 * `token` query parameter). Without one the decision answers `missing_token` from identity alone.
 */
function hasCredential(req: IncomingMessage): boolean {
  if (req.headers.authorization) return true;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q !== -1 && new URLSearchParams(url.slice(q + 1)).has('token');
}

/** RFC 9112 §6.3: a request without Content-Length or Transfer-Encoding has no body. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
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
  // The route's bounds come from its endpoint spec, the facts envoy.yaml's routes are checked
  // against (test/envoy-config/catalogue-conformance.test.ts). Envoy counts any bytes as activity,
  // WebSocket pings and pongs included, and so does the edge.
  const timeouts = (req: IncomingMessage): { routeTimeoutMs: number; idleTimeoutMs: number } => {
    const route = routeTimeouts(req.method ?? 'GET', req.url ?? '/');
    return {
      routeTimeoutMs: route.routeTimeoutMs > 0 ? (opts.upstreamTimeoutMs ?? route.routeTimeoutMs) : 0,
      idleTimeoutMs: opts.streamIdleTimeoutMs ?? route.idleTimeoutMs,
    };
  };
  const agents = createUpstreamAgents();
  // WebSocket sessions and SSE streams alike are governed by one registry (sessions.ts).
  const sessions = createSessionRegistry({
    ...(opts.maxSessionMs !== undefined ? { maxSessionMs: opts.maxSessionMs } : {}),
    ...(opts.sessionTokenGraceMs !== undefined ? { sessionTokenGraceMs: opts.sessionTokenGraceMs } : {}),
  });
  const ws = createWebSocketProxy({
    sessions,
    logger,
    ...(opts.wsHighWaterBytes !== undefined ? { highWaterBytes: opts.wsHighWaterBytes } : {}),
    ...(opts.wsLowWaterBytes !== undefined ? { lowWaterBytes: opts.wsLowWaterBytes } : {}),
    ...(opts.wsMaxPayloadBytes !== undefined ? { maxPayloadBytes: opts.wsMaxPayloadBytes } : {}),
  });
  // Mid-session enforcement: every open WebSocket and SSE stream is decided again against each new snapshot.
  const stopRechecks = opts.source.onSwap((next) => {
    const ended = sessions.recheck(next);
    if (ended > 0) logger.info({ ended, version: next.version }, 'sessions no longer entitled were ended');
  });

  const inFlight = createInFlight();
  let draining = false;
  let closing = false;
  const deps = { authorizer: opts.authorizer, logger, limits: opts.limits ?? createAdmissionLedger(), ...(opts.observe ? { observe: inFlight.observe(opts.observe) } : {}) };

  /**
   * The exchange as the connection manager hands it to the filters: x-forwarded-* and the request
   * id set, and the snapshot read here, once, for the whole exchange.
   */
  function arrival(req: IncomingMessage, routeKind: RouteKind, upgrade: boolean): Exchange {
    // The edge listens in plain HTTP; TLS, when any, ends in front of it.
    const scheme = 'http';
    const forwarded = forwardedFields(req.headersDistinct['x-forwarded-for'], req.socket.remoteAddress, scheme);
    const headers: Record<string, readonly string[] | undefined> = { ...req.headersDistinct };
    for (const [name, value] of Object.entries(forwarded)) headers[name] = [value];
    const given = headers['x-request-id']?.[0];
    const requestId = given && given.length > 0 ? given : randomUUID();
    headers['x-request-id'] = [requestId];
    return {
      requestId,
      startedAtMs: Date.now(),
      startHr: process.hrtime.bigint(),
      method: req.method ?? 'GET',
      pathWithQuery: req.url ?? '/',
      scheme,
      headers,
      routeKind,
      upgrade,
      snapshot: opts.source.current(),
    };
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const own = pathOnly(req.url ?? '/');
    if (own === '/healthz') return writeLocal(res, healthResponse());
    if (own === '/readyz') return writeLocal(res, readinessResponse(!draining && opts.source.current() !== undefined));

    const traits = routeTraits(req.method ?? 'GET', req.url ?? '/', false);
    const exchange = arrival(req, traits.kind, false);
    // As Envoy's CORS filter sits before ext_authz: an admitted preflight is answered here, without
    // authentication (browsers never send credentials on it, Fetch §3.2.2).
    const cors = corsVerdict(exchange.method, req.headers, exchange.snapshot?.cors);
    if (cors.kind === 'preflight') {
      // RFC 9110 §8.6: no Content-Length on a 204.
      res.writeHead(204, cors.headers);
      res.end();
      return;
    }
    const corsHeaders = cors.kind === 'allowed' ? cors.headers : undefined;
    let prefix: BodyPrefix | undefined;
    // No credential at all, or an origin nobody allowed: the decision denies before it would look at
    // a body, so answer without reading one.
    if (traits.sendsBody && cors.kind !== 'refused' && hasCredential(req)) {
      const limit = opts.maxDecisionBodyBytes ?? exchange.snapshot?.maxDecisionBodyBytes ?? DEFAULT_MAX_DECISION_BODY_BYTES;
      try {
        prefix = await readBodyPrefix(req, limit, opts.decisionBodyTimeoutMs ?? DEFAULT_DECISION_BODY_TIMEOUT_MS);
      } catch (err) {
        if (!(err instanceof BodyTimeoutError)) throw err;
        res.shouldKeepAlive = false;
        writeLocal(res, gatewayError('request_timeout', 'The request body did not arrive in time.'), corsHeaders);
        req.socket.destroySoon();
        return;
      }
    }
    const ok = await admit(deps, {
      exchange,
      ...(prefix ? { prefix } : {}),
      gone: () => res.destroyed,
      // Denials carry the CORS fields too, so the page can read why it was refused.
      answer: (r) => writeLocal(res, r, corsHeaders),
    });
    if (!ok) return;
    // A provider 429 is retried on another account only when the request can be sent again as it
    // was (rest-proxy.ts `reroute`): a body read whole for the decision, or no body at all.
    const { reroute, ...admitted } = ok;
    const replayable = prefix ? prefix.complete : !hasBody(req);
    proxyRest({
      req,
      res,
      ...admitted,
      ...(reroute && replayable ? { reroute } : {}),
      ...(prefix ? { bodyPrefix: prefix } : {}),
      ...timeouts(req),
      agents,
      logger,
      sessions,
      ...(corsHeaders ? { corsHeaders } : {}),
    });
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return writeRawResponse(socket, gatewayError('upgrade_not_allowed', 'Only WebSocket upgrades are supported.'));
    }
    if (!validWebSocketHandshake(req)) {
      return writeRawResponse(socket, gatewayError('bad_upgrade', 'Malformed WebSocket opening handshake.'));
    }
    // Browsers enforce no CORS on WebSockets and let any page open one (RFC 6455 §10.2): the
    // decision refuses an `Origin` outside cors.allowed_origins (origin_not_allowed) before the
    // provider's handshake starts. Clients without `Origin` (SDKs, Pipecat) are unaffected.
    const ok = await admit(deps, {
      exchange: arrival(req, 'websocket', true),
      gone: () => socket.destroyed,
      answer: (r) => writeRawResponse(socket, r),
    });
    if (!ok) return;
    const { reroute: _sessionsAreNotRetried, ...admitted } = ok;
    ws.proxy({ req, socket, head, ...admitted, ...timeouts(req) });
  }

  const headersTimeout = opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const server = http.createServer({
    // Long uploads and streams are bounded by the upstream, not by Node's 300 s request timer.
    requestTimeout: 0,
    // requestTimeout 0 would disable the head deadline too; keep one so partial heads cannot pin sockets.
    headersTimeout,
    // Node checks that deadline on this interval (30 s by default, which would triple a 10 s bound).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    noDelay: true,
  });
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    inFlight.trackResponse(res);
    if (closing) {
      // A request that arrived on a kept-alive connection after accepting stopped is served, then
      // its connection closes (`Connection: close`), as Envoy does on HTTP/1.1 while draining.
      res.shouldKeepAlive = false;
    }
    res.once('finish', () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    onRequest(req, res).catch((err: unknown) => {
      if (err instanceof ClientAbortedError) return;
      logger.error({ err }, 'edge request failed');
      if (!res.headersSent && !res.destroyed) writeLocal(res, gatewayError('internal_error', 'Internal gateway error.'));
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A session opened now would only be closed with 1001 moments later: refuse it as a closed
    // listener would (clients reconnect elsewhere).
    if (closing) return void socket.destroy();
    const decided = onUpgrade(req, socket, head).catch((err: unknown) => {
      logger.error({ err }, 'edge upgrade failed');
      writeRawResponse(socket, gatewayError('internal_error', 'Internal gateway error.'));
    });
    inFlight.trackUpgrade(decided);
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
    drain() {
      draining = true;
    },
    async close(closeOpts = {}) {
      draining = true;
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const graceMs = closeOpts.graceMs ?? 0;
      if (inFlight.requests > 0 && graceMs > 0) {
        logger.info({ requests: inFlight.requests, graceMs }, 'edge draining: waiting for in-flight requests');
        if (!(await inFlight.requestsDone(graceMs))) logger.warn({ requests: inFlight.requests }, 'drain window over; cutting the requests still in flight');
      }
      inFlight.cutting();
      await ws.close();
      server.closeAllConnections();
      // A WebSocket whose handshake was under way when the sessions were closed opens after; close
      // again until every exchange has ended, so each one's span is published before the sink closes.
      const deadline = Date.now() + SPAN_SETTLE_MS;
      while (!(await inFlight.settled(50)) && Date.now() < deadline) {
        await ws.close();
        server.closeAllConnections();
      }
      // Sessions stay re-checked through the drain window, until the last one has closed.
      stopRechecks();
      agents.destroy();
      await closed;
    },
  };
}
