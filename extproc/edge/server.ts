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
import type { Authorizer } from '../authz/types.ts';
import type { SnapshotSource } from '../config/snapshot.ts';
import { ClientAbortedError, readBodyPrefix, type BodyPrefix } from './body-prefix.ts';
import { buildCheckInput, routeTraits } from './check-input.ts';
import { decide, exchangeStart, type ArrivalFacts } from './decide.ts';
import type { ExchangeObserverFactory } from './exchange-observer.ts';
import { flattenHeaders } from './headers.ts';
import { createUpstreamAgents, proxyRest, writeLocal } from './rest-proxy.ts';
import { denyResponse, gatewayError, healthResponse, readinessResponse } from './responses.ts';
import { openObserver } from './safe-observer.ts';
import { planUpstream } from './upstream-plan.ts';
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
  const agents = createUpstreamAgents();
  const ws = createWebSocketProxy({
    logger,
    ...(opts.wsHighWaterBytes !== undefined ? { highWaterBytes: opts.wsHighWaterBytes } : {}),
    ...(opts.wsLowWaterBytes !== undefined ? { lowWaterBytes: opts.wsLowWaterBytes } : {}),
  });

  function arrival(req: IncomingMessage, upgrade: boolean): ArrivalFacts & { scheme: 'http' } {
    const method = req.method ?? 'GET';
    const pathWithQuery = req.url ?? '/';
    const headers = flattenHeaders(req.headers);
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
      routeKind: routeTraits(method, pathWithQuery, upgrade).kind,
      scheme: 'http',
    };
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const own = pathOnly(req.url ?? '/');
    if (own === '/healthz') return writeLocal(res, healthResponse());
    if (own === '/readyz') return writeLocal(res, readinessResponse(opts.source.current() !== undefined));

    const facts = arrival(req, false);
    const snapshot = opts.source.current();
    const traits = routeTraits(facts.method, facts.pathWithQuery, false);
    let prefix: BodyPrefix | undefined;
    if (traits.sendsBody) {
      const limit = opts.maxDecisionBodyBytes ?? snapshot?.maxDecisionBodyBytes ?? DEFAULT_MAX_DECISION_BODY_BYTES;
      prefix = await readBodyPrefix(req, limit);
    }
    const input = buildCheckInput({
      method: facts.method,
      pathWithQuery: facts.pathWithQuery,
      headers: facts.headers,
      requestId: facts.requestId,
      scheme: facts.scheme,
      ...(prefix ? { body: prefix.forDecision, partialBody: prefix.partial } : {}),
    });
    const decision = await decide(opts.authorizer, input, logger);
    const observer = openObserver(
      opts.observe,
      exchangeStart(prefix ? { ...facts, requestBody: prefix.forDecision } : facts, decision),
      logger,
    );
    if (res.destroyed) return observer.end({ status: 0, error: 'client_aborted' });
    if (decision.kind === 'deny') {
      writeLocal(res, denyResponse(decision));
      return observer.end({ status: decision.status });
    }
    const plan = snapshot
      ? planUpstream({
          snapshot,
          decision,
          pathWithQuery: facts.pathWithQuery,
          callerHeaders: req.headersDistinct,
          requestId: facts.requestId,
          websocket: false,
        })
      : undefined;
    if (plan?.kind !== 'upstream') {
      const r = plan
        ? gatewayError(404, 'no_route', plan.message)
        : gatewayError(503, 'no_snapshot', 'The gateway has no configuration loaded yet.');
      writeLocal(res, r);
      return observer.end({ status: r.status, error: plan ? 'no_route' : 'no_snapshot' });
    }
    proxyRest({ req, res, plan, ...(prefix ? { bodyPrefix: prefix } : {}), observer, timeoutMs, agents, logger });
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return writeRawResponse(socket, gatewayError(403, 'upgrade_not_allowed', 'Only WebSocket upgrades are supported.'));
    }
    if (!validWebSocketHandshake(req)) {
      return writeRawResponse(socket, gatewayError(400, 'bad_upgrade', 'Malformed WebSocket opening handshake.'));
    }
    const facts = arrival(req, true);
    const snapshot = opts.source.current();
    const input = buildCheckInput({
      method: facts.method,
      pathWithQuery: facts.pathWithQuery,
      headers: facts.headers,
      requestId: facts.requestId,
      scheme: facts.scheme,
    });
    const decision = await decide(opts.authorizer, input, logger);
    const observer = openObserver(opts.observe, exchangeStart(facts, decision), logger);
    if (socket.destroyed) return observer.end({ status: 0, error: 'client_aborted' });
    if (decision.kind === 'deny') {
      writeRawResponse(socket, denyResponse(decision));
      return observer.end({ status: decision.status });
    }
    const plan = snapshot
      ? planUpstream({
          snapshot,
          decision,
          pathWithQuery: facts.pathWithQuery,
          callerHeaders: req.headersDistinct,
          requestId: facts.requestId,
          websocket: true,
        })
      : undefined;
    if (plan?.kind !== 'upstream') {
      const r = plan
        ? gatewayError(404, 'no_route', plan.message)
        : gatewayError(503, 'no_snapshot', 'The gateway has no configuration loaded yet.');
      writeRawResponse(socket, r);
      return observer.end({ status: r.status, error: plan ? 'no_route' : 'no_snapshot' });
    }
    ws.proxy({ req, socket, head, plan, observer, timeoutMs });
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
