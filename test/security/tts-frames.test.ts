/**
 * Issue 9, point 5: the model a TTS WebSocket frame names. Through the real edge and decision with
 * the simulator as the provider, a frame naming a model the session was not decided for is never
 * relayed: the client gets the provider-shaped error frame and close code 1008, the simulator
 * receives nothing of it, and the span bills only what was served, at the session model's price.
 * Pro is configured as its own model here (a price of its own), as issue 9 point 13 wants it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { startEdge, type EdgeHandle } from '../../extproc/adapters/edge/server.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import type { SpanSink } from '../../extproc/core/usage/span-sink.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { startSimulator, type RecordedFrame, type SimulatorHandle } from '../../simulator/server.ts';
import { EXAMPLES_DIR, startStack, type Stack } from '../e2e/stack.ts';
import { until } from '../edge/helpers.ts';
import { handleAccessLogMessage } from '../../extproc/adapters/envoy/access-log-service.ts';
import { EnvoyCorrelator } from '../../extproc/adapters/envoy/access-log-span.ts';

const config = (upstream: string) => `
version: 1
identity:
  issuers:
    - issuer: https://voicegate.local/dev
      audiences: [voicegate]
      jwks: file:dev/jwks.json
      algorithms: [ES256, RS256, EdDSA]
      claims: { user: sub, teams: teams, roles: roles }
      dev_signing_key: file:dev/signing-key.jwk.json
providers:
  smallest:
    upstream: ${upstream}
    default_models: { tts: lightning-v3.1, stt: pulse }
accounts:
  - name: smallest-tts
    provider: smallest
    token: file:dev/smallest-tts.key
    concurrency: 4
    collaborators: { teams: [voice] }
  - name: smallest-stt
    provider: smallest
    token: file:dev/smallest-stt.key
    concurrency: 4
    collaborators: { teams: [voice] }
models:
  - name: lightning-v3.1
    provider: smallest
    type: tts
    account: smallest-tts
    aliases: [lightning_v3.1]
    price: { per_1k_chars: "0.0195" }
  - name: lightning-v3.1-pro
    provider: smallest
    type: tts
    account: smallest-tts
    aliases: [lightning_v3.1_pro]
    price: { per_1k_chars: "0.039" }
  - name: pulse
    provider: smallest
    type: stt
    account: smallest-stt
    price: { per_minute: "0.0035", per_minute_streaming: "0.006" }
`;

let sim: SimulatorHandle;
let snapshot: Snapshot;
let edge: EdgeHandle;
let token: string;
let wsBase: string;
const spans: UsageSpan[] = [];
const sink: SpanSink = { publish: (s) => void spans.push(s), flush: async () => {}, close: async () => {} };

beforeAll(async () => {
  const bootstrap = await loadSnapshotFromText(config('http://127.0.0.1:1'), { origin: 'test', baseDir: EXAMPLES_DIR });
  const key = (name: string) => bootstrap.accounts.get(name)!.token;
  sim = await startSimulator({
    host: '127.0.0.1',
    port: 0,
    profile: 'instant',
    accounts: [
      { key: key('smallest-tts'), units: 4 },
      { key: key('smallest-stt'), units: 4 },
    ],
  });
  snapshot = await loadSnapshotFromText(config(sim.url), { origin: 'test', baseDir: EXAMPLES_DIR });
  const source = new StaticSnapshotSource(snapshot);
  edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: createAuthorizer(source), observe: createUsageObserverFactory({ sink }) });
  token = await signDevToken(snapshot, { user: 'alice', teams: ['voice'] });
  wsBase = edge.url.replace(/^http/, 'ws');
});
afterAll(async () => {
  await edge?.close();
  await sim?.close();
});

interface Session {
  readonly ws: WebSocket;
  readonly messages: Record<string, unknown>[];
  readonly closed: Promise<{ code: number; reason: string }>;
}

async function open(base: string, path: string, bearer: string): Promise<Session> {
  const ws = new WebSocket(`${base}${path}`, { headers: { authorization: `Bearer ${bearer}` } });
  const messages: Record<string, unknown>[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d)) as Record<string, unknown>));
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.once('close', (code, reason) => r({ code, reason: String(reason) })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, messages, closed };
}

const frame = (text: string, model?: string): string =>
  JSON.stringify({ text, voice_id: 'magnus', complete_backoff_ms: 20, ...(model !== undefined ? { model } : {}) });

/** The frames the simulator received after `before` of them had been recorded. */
const framesSince = (before: number): RecordedFrame[] => sim.frames().slice(before);

function expectProviderError(s: Session): void {
  const last = s.messages.at(-1)!;
  expect(last['status']).toBe('error');
  expect(typeof last['message']).toBe('string');
  expect(last['error']).toBe(last['message']);
}

/** The one span of the session the test opened (spans before index `since` belong to others). */
async function spanOf(path: string, since: number): Promise<UsageSpan> {
  const mine = () => spans.slice(since).filter((s) => s.path === path);
  await until(() => mine().length > 0, 5000, `span of ${path}`);
  expect(mine()).toHaveLength(1);
  return mine()[0]!;
}

describe('a frame naming another model than the session was decided for', () => {
  it('on a path route: the alias of the session model is served and billed, Pro is refused with 1008 and never reaches the provider', async () => {
    const path = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';
    const before = sim.frames().length;
    const spansBefore = spans.length;
    const s = await open(wsBase, path, token);
    s.ws.send(frame('Hello there', 'lightning_v3.1'));
    await until(() => s.messages.some((m) => m['status'] === 'complete'), 5000, 'the alias frame served');
    expect(s.messages.some((m) => m['status'] === 'chunk')).toBe(true);

    // Alice may use Pro on the same account, but this session was decided for lightning-v3.1.
    s.ws.send(frame('Premium voice please', 'lightning_v3.1_pro'));
    const { code } = await s.closed;
    expect(code).toBe(1008);
    expectProviderError(s);
    expect(String(s.messages.at(-1)!['message'])).toContain('lightning_v3.1_pro');

    const received = framesSince(before);
    expect(received.map((f) => JSON.parse(f.text).text)).toEqual(['Hello there']);
    expect(received.some((f) => f.text.includes('lightning_v3.1_pro'))).toBe(false);

    const span = await spanOf(path, spansBefore);
    expect(span.model).toBe('lightning-v3.1');
    expect(span.closeCode).toBe(1008);
    // Only the served text, at the standard price: 11 characters × $0.0195 / 1000.
    expect(span.characters).toBe(11);
    expect(span.costUsd).toBe('0.0002145');
  });

  it('on /tts/live without ?model (the default model): a frame naming Pro is refused before anything is served', async () => {
    const path = '/smallest/waves/v1/tts/live';
    const before = sim.frames().length;
    const spansBefore = spans.length;
    const s = await open(wsBase, path, token);
    s.ws.send(frame('Premium voice please', 'lightning_v3.1_pro'));
    const { code } = await s.closed;
    expect(code).toBe(1008);
    expectProviderError(s);
    expect(s.messages.filter((m) => m['status'] === 'chunk')).toEqual([]);
    expect(framesSince(before)).toEqual([]);
    const span = await spanOf(path, spansBefore);
    expect(span.model).toBe('lightning-v3.1');
    expect(span.characters ?? 0).toBe(0);
    expect(span.costUsd).toBe('0');
  });

  it('on /tts/live?model=lightning-v3.1-pro: Pro frames pass by alias and are billed at Pro\'s own price; the standard model is refused', async () => {
    const path = '/smallest/waves/v1/tts/live';
    const before = sim.frames().length;
    const spansBefore = spans.length;
    const s = await open(wsBase, `${path}?model=lightning-v3.1-pro`, token);
    s.ws.send(frame('Twenty characters!!!', 'lightning_v3.1_pro'));
    await until(() => s.messages.some((m) => m['status'] === 'complete'), 5000, 'the Pro frame served');
    s.ws.send(frame('cheaper', 'lightning_v3.1'));
    expect((await s.closed).code).toBe(1008);
    expect(framesSince(before).map((f) => JSON.parse(f.text).model)).toEqual(['lightning_v3.1_pro']);
    const span = await spanOf(path, spansBefore);
    expect(span.model).toBe('lightning-v3.1-pro');
    expect(span.characters).toBe(20);
    expect(span.costUsd).toBe('0.00078');
  });
});

describe('frames whose model cannot be read are refused, not relayed', () => {
  const cases: [string, string | Buffer][] = [
    ['a text frame that is not JSON', 'model=lightning_v3.1_pro hello'],
    ['a binary frame holding JSON', Buffer.from(frame('Hi', 'lightning_v3.1_pro'))],
    ['a repeated model key', '{"text":"Hi","voice_id":"magnus","model":"lightning_v3.1","model":"lightning_v3.1_pro"}'],
    ['an escaped model key', '{"text":"Hi","voice_id":"magnus","mod\\u0065l":"lightning_v3.1_pro"}'],
  ];
  it.each(cases)('%s', async (_what, data) => {
    const before = sim.frames().length;
    const s = await open(wsBase, '/smallest/waves/v1/lightning-v3.1/get_speech/stream', token);
    s.ws.send(data, { binary: Buffer.isBuffer(data) });
    expect((await s.closed).code).toBe(1008);
    expectProviderError(s);
    expect(framesSince(before)).toEqual([]);
  });
});

describe('with the decision over ext_authz gRPC (the example config)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack('grpc', { simulator: { profile: 'instant' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('the decision metadata carries what the frame check needs: another configured model on the same account is refused', async () => {
    const s = await open(stack.wsUrl, '/smallest/waves/v1/lightning-v3.1/get_speech/stream', stack.tokens.alice);
    // `lightning` is a separate (retired) model of the same account in examples/voicegate.yaml.
    s.ws.send(frame('Hello', 'lightning'));
    expect((await s.closed).code).toBe(1008);
    expectProviderError(s);
    expect(stack.sim.frames()).toEqual([]);
  });
});

describe('under Envoy, the sessions it hands the edge are metered once, by the edge', () => {
  // What Envoy's access log reports for a TTS WebSocket session routed to cluster voicegate_edge:
  // ext_authz is off on that route, so no decision metadata; the edge published the real span.
  const entry = (upstreamCluster: string) => ({
    common_properties: {
      start_time: { seconds: 1_700_000_000, nanos: 0 },
      duration: { seconds: 3, nanos: 0 },
      stream_id: `s-${upstreamCluster}`,
      upstream_cluster: upstreamCluster,
    },
    request: { request_method: 'GET', path: '/smallest/waves/v1/tts/live', request_id: `r-${upstreamCluster}`, request_body_bytes: 5000 },
    response: { response_code: { value: 101 }, response_body_bytes: 90000 },
  });

  it('an access-log entry of the edge cluster yields no span; one of the provider cluster does', () => {
    const published: UsageSpan[] = [];
    const memory: SpanSink = { publish: (s) => void published.push(s), flush: async () => {}, close: async () => {} };
    handleAccessLogMessage({ http_logs: { log_entry: [entry('voicegate_edge')] } }, memory, new EnvoyCorrelator());
    expect(published).toEqual([]);
    handleAccessLogMessage({ http_logs: { log_entry: [entry('smallest')] } }, memory, new EnvoyCorrelator());
    expect(published).toHaveLength(1);
  });
});
