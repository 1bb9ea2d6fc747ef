/** Shared fixtures for the edge tests: a scripted authorizer, a snapshot, a local upstream. */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Allow, Authorizer, CheckInput, Decision, Deny } from '../../extproc/core/decision/types.ts';
import { statusOf, type DenyCode } from '../../extproc/core/decision/denials.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import type { ExchangeEnd, ExchangeObserverFactory } from '../../extproc/core/exchange/exchange-observer.ts';
import type { Exchange } from '../../extproc/core/exchange/exchange.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { removeQueryParams } from '../../extproc/core/decision/query.ts';

export const PROVIDER_KEY = 'sk_provider_secret_123';

export function snapshotFor(upstream: string): Snapshot {
  return {
    version: 1,
    origin: 'test',
    issuers: [],
    providers: new Map([['smallest', { name: 'smallest', upstream }]]),
    accounts: new Map(),
    models: new Map(),
    defaultModels: new Map(),
    maxDecisionBodyBytes: 65536,
  };
}

function deny(code: DenyCode, headers: Record<string, string> = {}): Deny {
  return { kind: 'deny', status: statusOf(code), code, message: `denied: ${code}`, headers, metadata: { user: 'someone' } };
}

/** Mirrors the real decision's shape: Bearer/`?token=` → allow with the provider key injected. */
export function scriptedDecision(input: CheckInput): Decision {
  const auth = input.headers.authorization ?? '';
  const url = new URL(input.path, 'http://x');
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : (url.searchParams.get('token') ?? '');
  if (token === '') return deny('missing_token', { 'www-authenticate': 'Bearer realm="voicegate"' });
  if (token === 'forbidden') return deny('not_entitled');
  if (token === 'unknown-model') return deny('unknown_model');
  if (token === 'busy') return deny('authz_unavailable');
  if (token !== 'good') return deny('invalid_signature', { 'www-authenticate': 'Bearer error="invalid_token"' });
  const rest = removeQueryParams(input.path, ['token']).replace(/^\/smallest/, '').replace(/^\/api\/v1\//, '/waves/v1/');
  const allow: Allow = {
    kind: 'allow',
    headersToSet: [{ key: 'authorization', value: `Bearer ${PROVIDER_KEY}` }],
    headersToRemove: ['x-api-key', 'cookie', 'proxy-authorization'],
    queryParametersToRemove: ['token'],
    metadata: {
      user: 'alice',
      provider: 'smallest',
      model: 'lightning-v3.1',
      upstream_path: rest,
    },
  };
  return allow;
}

/** Records every check input; decides with {@link scriptedDecision}. */
export class TestAuthorizer implements Authorizer {
  readonly inputs: CheckInput[] = [];
  async check(input: CheckInput): Promise<Decision> {
    this.inputs.push(input);
    return scriptedDecision(input);
  }
}

export interface Recorded {
  exchange: Exchange;
  decision: Decision;
  calls: string[];
  requestBytes: number;
  responseBytes: number;
  clientMessages: Array<{ text: string; binary: boolean }>;
  upstreamMessages: Array<{ text: string; binary: boolean }>;
  ends: ExchangeEnd[];
}

/** An observer factory that keeps everything it was told. */
export function recordingObserver(): { exchanges: Recorded[]; observe: ExchangeObserverFactory } {
  const exchanges: Recorded[] = [];
  return {
    exchanges,
    observe(exchange, decision) {
      const r: Recorded = { exchange, decision, calls: [], requestBytes: 0, responseBytes: 0, clientMessages: [], upstreamMessages: [], ends: [] };
      exchanges.push(r);
      return {
        requestChunk: (c) => ((r.requestBytes += c.byteLength), r.calls.push('requestChunk')),
        responseStart: () => void r.calls.push('responseStart'),
        responseChunk: (c) => ((r.responseBytes += c.byteLength), r.calls.push('responseChunk')),
        clientMessage: (d, binary) => void r.clientMessages.push({ text: Buffer.from(d).toString(), binary }),
        upstreamMessage: (d, binary) => void r.upstreamMessages.push({ text: Buffer.from(d).toString(), binary }),
        end: (o) => void r.ends.push(o),
      };
    },
  };
}

export interface Upstream {
  url: string;
  server: http.Server;
  wss: WebSocketServer;
  close(): Promise<void>;
}

/** A local HTTP + WebSocket upstream driven by the test's handlers. */
export async function startUpstream(
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
  onSocket: (ws: WebSocket, req: IncomingMessage) => void = () => {},
  wsOptions: ConstructorParameters<typeof WebSocketServer>[0] = {},
): Promise<Upstream> {
  const server = http.createServer(onRequest);
  const wss = new WebSocketServer({ server, perMessageDeflate: false, ...wsOptions });
  wss.on('connection', onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    wss,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export async function startTestEdge(upstreamUrl: string, extra: Partial<Parameters<typeof startEdge>[0]> = {}) {
  const authorizer = new TestAuthorizer();
  const rec = recordingObserver();
  const source = new StaticSnapshotSource(snapshotFor(upstreamUrl));
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer, observe: rec.observe, ...extra });
  return { edge, authorizer, rec, source };
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Resolves when `cond` holds, polling; rejects after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves when the socket opens; rejects on a failed handshake. */
export function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
}

/** Resolves with the close code and reason. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}
