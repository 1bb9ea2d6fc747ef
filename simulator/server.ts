/**
 * The bundled simulator of api.smallest.ai: Lightning TTS (REST, SSE, WebSocket) and Pulse STT
 * (REST, WebSocket) on all three path generations, with real auth, concurrency units, latency
 * profiles, per-request scripting (`x-sim-status`, `x-sim-delay-ms`) and a request recorder.
 *
 * @example
 * const sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: 'sk_test', units: 2 }] });
 * await fetch(`${sim.url}/waves/v1/health`);
 * await sim.close();
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { Accounts, type AccountState, type SimulatorAccount, type UnitUsage } from './accounts.ts';
import type { SimContext } from './context.ts';
import { headerValue, rejectUpgrade, sendJson } from './http-util.ts';
import { INSTANT, REALISTIC_DEFAULTS, sleep, type Pacing } from './pacing.ts';
import { FrameRecorder, RequestRecorder, type RecordedFrame, type RecordedRequest } from './recorder.ts';
import { matchRoute, splitTarget, type Route } from './routes.ts';
import { RATE_LIMIT_BODY, readScript, scriptedBody } from './scripting.ts';
import { parseSttOptions, sttModelServed } from './stt-options.ts';
import { handleSttRest } from './stt-rest.ts';
import { SttSocketSession } from './stt-ws.ts';
import { DEFAULT_TTS_MODEL } from './tts-request.ts';
import { modelRefusal } from './tts-model.ts';
import { handleTtsRest } from './tts-rest.ts';
import { idleTimeoutSec, TtsSocketSession } from './tts-ws.ts';
import { handleVoices } from './voices.ts';

export type { SimulatorAccount, UnitUsage } from './accounts.ts';
export type { RecordedFrame, RecordedRequest } from './recorder.ts';

export interface SimulatorOptions {
  host?: string;
  /** 0 = ephemeral; default 7070. */
  port?: number;
  /** `instant`: no artificial delay (benchmarks). `realistic` (default): first audio ~100 ms, 4× real time. */
  profile?: 'instant' | 'realistic';
  accounts: SimulatorAccount[];
  /** TTS WebSocket connections allowed per unit (default 5). */
  wsConnectionsPerUnit?: number;
  /** Realistic profile: ms before the first audio (default 100). */
  firstAudioMs?: number;
  /** Realistic profile: audio seconds generated per wall second (default 4). */
  speedFactor?: number;
  /** Accept `?token=<key>` on WebSocket upgrades (default false: the gateway must strip it). */
  allowQueryToken?: boolean;
}

export interface SimulatorHandle {
  /** `http://127.0.0.1:PORT` */
  url: string;
  port: number;
  /** Requests and upgrades received, oldest first (the last 1000). */
  requests(): RecordedRequest[];
  /** Client messages received on TTS WebSockets, oldest first (the last 1000). */
  frames(): RecordedFrame[];
  /** Per key: the most units and sockets in use at once, and the over-limit refusals it made. */
  unitUsage(): UnitUsage[];
  /** Accepts further keys from now on (keys already known keep their live state). */
  addAccounts(accounts: readonly SimulatorAccount[]): void;
  close(): Promise<void>;
}

export const DEFAULT_SIMULATOR_PORT = 7070;
export const DEFAULT_WS_CONNECTIONS_PER_UNIT = 5;

function pacingFor(opts: SimulatorOptions): Pacing {
  if (opts.profile === 'instant') return INSTANT;
  return {
    firstAudioMs: opts.firstAudioMs ?? REALISTIC_DEFAULTS.firstAudioMs,
    speedFactor: opts.speedFactor ?? REALISTIC_DEFAULTS.speedFactor,
  };
}

const HEALTH_BODY = { status: 'ok' };

/** Starts the simulator and resolves once it listens. */
export async function startSimulator(opts: SimulatorOptions): Promise<SimulatorHandle> {
  const ctx: SimContext = {
    pacing: pacingFor(opts),
    accounts: new Accounts(opts.accounts),
    wsConnectionsPerUnit: opts.wsConnectionsPerUnit ?? DEFAULT_WS_CONNECTIONS_PER_UNIT,
    allowQueryToken: opts.allowQueryToken ?? false,
    frames: new FrameRecorder(1000),
  };
  const recorder = new RequestRecorder(1000);
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

  const server = createServer((req, res) => {
    recorder.record(req.method, req.url, req.headers, false);
    onRequest(ctx, req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, { error: 'Internal simulator error' });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    recorder.record(req.method, req.url, req.headers, true);
    socket.on('error', () => socket.destroy());
    onUpgrade(ctx, wss, req, socket, head).catch(() => socket.destroy());
  });

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_SIMULATOR_PORT, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    requests: () => recorder.list(),
    frames: () => ctx.frames.list(),
    addAccounts: (accounts) => ctx.accounts.add(accounts),
    unitUsage: () => ctx.accounts.usage(),
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function onRequest(ctx: SimContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { pathname, query } = splitTarget(req.url ?? '/');
  const route = matchRoute(req.method ?? 'GET', pathname, false);
  if (route.kind === 'health') return sendJson(res, 200, HEALTH_BODY);
  if (route.kind === 'not_found') return sendJson(res, 404, { error: 'Not Found' });
  if (route.kind === 'method_not_allowed') return sendJson(res, 405, { error: 'Method Not Allowed' });
  const auth = ctx.accounts.authenticate(headerValue(req.headers.authorization));
  if (!auth.ok) return sendJson(res, 401, auth.body);
  const script = readScript(req.headers);
  if (script.status !== undefined) {
    await sleep(script.delayMs);
    req.resume();
    return sendJson(res, script.status, scriptedBody(script.status));
  }
  if (route.kind === 'voices') {
    await sleep(script.delayMs);
    return handleVoices(req, res, auth.account, route.op, route.model);
  }
  if (route.kind === 'tts') {
    if (route.mode === 'ws') return sendJson(res, 405, { error: 'Method Not Allowed' });
    return handleTtsRest(ctx, req, res, auth.account, route.model, route.mode, script.delayMs);
  }
  await sleep(script.delayMs);
  return handleSttRest(req, res, new URLSearchParams(query), route.model);
}

type WsRoute = Extract<Route, { kind: 'tts' | 'stt' }>;

async function onUpgrade(ctx: SimContext, wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const { pathname, query: rawQuery } = splitTarget(req.url ?? '/');
  const route = matchRoute('GET', pathname, true);
  if (route.kind !== 'tts' && route.kind !== 'stt') return rejectUpgrade(socket, 404, { error: 'Not Found' });
  const query = new URLSearchParams(rawQuery);
  const queryToken = ctx.allowQueryToken ? (query.get('token') ?? undefined) : undefined;
  const auth = ctx.accounts.authenticate(headerValue(req.headers.authorization), queryToken);
  if (!auth.ok) return rejectUpgrade(socket, 401, auth.body);
  const script = readScript(req.headers);
  await sleep(script.delayMs);
  if (script.status !== undefined) return rejectUpgrade(socket, script.status, scriptedBody(script.status));
  if (socket.destroyed) return;
  return route.kind === 'tts' ? upgradeTts(ctx, wss, req, socket, head, route, query, auth.account) : upgradeStt(wss, req, socket, head, route, query, auth.account);
}

function upgradeTts(ctx: SimContext, wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer, route: WsRoute, query: URLSearchParams, account: AccountState): void {
  const refusal = modelRefusal(route.model ?? query.get('model') ?? DEFAULT_TTS_MODEL, 'ws');
  if (refusal) return rejectUpgrade(socket, refusal.status, refusal.body);
  if (account.ttsSockets >= account.units * ctx.wsConnectionsPerUnit) {
    account.refusals++;
    return rejectUpgrade(socket, 429, RATE_LIMIT_BODY);
  }
  // ws completes the handshake synchronously (no verifyClient), so the check above and the
  // session's count below happen in one tick and parallel upgrades cannot overshoot the cap
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ctx.frames.record(req.url, data as Buffer, isBinary));
    new TtsSocketSession(ws, ctx, account, idleTimeoutSec(query));
  });
}

function upgradeStt(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer, route: WsRoute, query: URLSearchParams, account: AccountState): void {
  const parsed = parseSttOptions(query);
  if (!parsed.ok) return rejectUpgrade(socket, 400, { status: 'error', message: parsed.message });
  const model = route.model ?? parsed.value.model ?? 'pulse';
  if (!sttModelServed(model, true)) return rejectUpgrade(socket, 404, { status: 'error', error: 'Model not found', message: `Model '${model}' not found` });
  wss.handleUpgrade(req, socket, head, (ws) => {
    // Pulse accepts the socket and then closes it with 1008 (policy violation) when over the cap
    if (account.sttSockets >= account.units) {
      account.refusals++;
      ws.close(1008, 'Concurrency limit exceeded');
      return;
    }
    new SttSocketSession(ws, account, parsed.value);
  });
}
