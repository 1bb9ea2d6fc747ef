/**
 * Limits under Envoy (issue 12 point 5): the real extproc gRPC server (Check, ext_proc, access
 * logs) with an admission ledger, driven by an Envoy-shaped client on Envoy's own protos. Check
 * takes the units and puts the slot id in the ext_authz dynamic metadata; the test forwards that
 * metadata to ext_proc and the access log exactly as envoy.yaml makes Envoy do
 * (`forwarding_namespaces: untyped: [envoy.filters.http.ext_authz]`).
 */
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvoyProtos, lookup } from '../../protos/envoy-protos.ts';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import type { CheckInput } from '../../extproc/core/decision/types.ts';
import { createAdmissionLedger, type AdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { SlotTable } from '../../extproc/core/limits/slots.ts';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import { createGrpcAuthorizer, toCheckRequest } from '../../extproc/adapters/envoy/authz-client.ts';
import { startExtprocServer, type ExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { limitMetrics } from '../../extproc/adapters/prometheus/limit-metrics.ts';
import { envoyUsageServices } from '../../extproc/main/envoy-usage-services.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { DEV_IDENTITY_YAML } from '../limits/stack.ts';
import { EXAMPLES_DIR } from '../e2e/stack.ts';
import { MemorySink } from '../usage/helpers.ts';

type ClientCtor = new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client & Record<string, (...a: unknown[]) => unknown>;

interface StructValue {
  stringValue?: string;
  numberValue?: number;
}
interface Struct {
  fields?: Record<string, StructValue>;
}
/** A CheckResponse as proto-loader decodes it (keepCase, enums as strings). */
interface CheckResponseMsg {
  status?: { code?: number };
  denied_response?: { status?: { code?: string }; headers?: Array<{ header?: { key: string; value: string } }>; body?: string };
  ok_response?: { headers?: Array<{ header?: { key: string; value: string } }> };
  dynamic_metadata?: Struct;
}

const CLAIM_TIMEOUT_MS = 400;
const protos = loadEnvoyProtos();
const registry = new Registry();
const sink = new MemorySink();
let snapshot: Snapshot;
let ledger: AdmissionLedger;
let slots: SlotTable;
let server: ExtprocServer;
let authz: InstanceType<ClientCtor>;
let extProc: InstanceType<ClientCtor>;
let als: InstanceType<ClientCtor>;
let address: string;

beforeAll(async () => {
  snapshot = await loadSnapshotFromText(
    `
version: 1
${DEV_IDENTITY_YAML}providers:
  smallest:
    upstream: http://127.0.0.1:9
    default_models: { tts: lightning-v3.1, stt: pulse }
accounts:
  - name: smallest-tts
    token: file:dev/smallest-tts.key
    concurrency: 2
    collaborators: { teams: [voice] }
  - name: smallest-stt
    token: file:dev/smallest-stt.key
    concurrency: 2
    collaborators: { teams: [voice] }
models:
  - { name: lightning-v3.1, type: tts, account: smallest-tts }
  - { name: pulse, type: stt, account: smallest-stt }
limits:
  users: { capped: { max_units: 1 } }
`,
    { origin: 'test:envoy-limits', baseDir: EXAMPLES_DIR },
  );
  const source = new StaticSnapshotSource(snapshot);
  ledger = createAdmissionLedger();
  const limited = limitMetrics(registry, ledger, () => source.current()?.accounts.values() ?? []);
  slots = new SlotTable({ claimTimeoutMs: CLAIM_TIMEOUT_MS, onRelease: (cause) => limited.slotReleased(cause) });
  server = await startExtprocServer({
    host: '127.0.0.1',
    port: 0,
    authorizer: createAuthorizer(source),
    source,
    logger: pino({ level: 'silent' }),
    limits: { ledger: limited.ledger, slots },
    extraServices: envoyUsageServices(sink, source, slots),
  });
  address = `127.0.0.1:${server.port}`;
  const client = (name: string) => new (lookup<ClientCtor>(protos, name))(address, grpc.credentials.createInsecure());
  authz = client('envoy.service.auth.v3.Authorization');
  extProc = client('envoy.service.ext_proc.v3.ExternalProcessor');
  als = client('envoy.service.accesslog.v3.AccessLogService');
});

afterAll(async () => {
  authz.close();
  extProc.close();
  als.close();
  await server.close(0);
});

let requestSeq = 0;

/** Envoy's Check for one request, as envoy.yaml sends it (the TTS JSON body packed as bytes). */
async function check(user: string, kind: 'tts' | 'stt-ws' | 'tts-ws'): Promise<CheckResponseMsg> {
  const token = await signDevToken(snapshot, { user, teams: ['voice'] });
  const id = `req-${++requestSeq}`;
  const headers: Record<string, string> = { ':authority': 'gw', ':scheme': 'http', authorization: `Bearer ${token}`, 'x-request-id': id };
  const input: CheckInput =
    kind === 'tts'
      ? {
          method: 'POST',
          path: '/smallest/waves/v1/lightning-v3.1/get_speech',
          headers: { ...headers, ':method': 'POST', ':path': '/smallest/waves/v1/lightning-v3.1/get_speech', 'content-type': 'application/json' },
          body: new TextEncoder().encode('{"text":"hello","voice_id":"magnus"}'),
          requestId: id,
        }
      : {
          method: 'GET',
          path: kind === 'stt-ws' ? '/smallest/waves/v1/stt/live?model=pulse&encoding=linear16' : '/smallest/waves/v1/tts/live?model=lightning-v3.1',
          headers: { ...headers, ':method': 'GET', connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
          requestId: id,
        };
  return new Promise((resolve, reject) =>
    authz.Check!(toCheckRequest(input), (err: grpc.ServiceError | null, r: CheckResponseMsg) => (err ? reject(err) : resolve(r))),
  );
}

const slotOf = (r: CheckResponseMsg): string | undefined => r.dynamic_metadata?.fields?.['limit_slot']?.stringValue;

/** What Envoy forwards to ext_proc and writes into the access log: the ext_authz namespace as Check set it. */
const forwarded = (r: CheckResponseMsg) => ({ filter_metadata: { 'envoy.filters.http.ext_authz': r.dynamic_metadata } });

/** Opens the ext_proc stream of the request `r` admitted (observability mode, as envoy.yaml runs it). */
function openStream(r: CheckResponseMsg): grpc.ClientDuplexStream<object, object> {
  const call = extProc.Process!() as grpc.ClientDuplexStream<object, object>;
  call.on('error', () => undefined);
  call.write({
    observability_mode: true,
    request_headers: { headers: { headers: [{ key: 'x-request-id', raw_value: Buffer.from('x') }] } },
    metadata_context: forwarded(r),
  });
  return call;
}

function sendAccessLog(r: CheckResponseMsg, extra: Record<string, unknown> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = als.StreamAccessLogs!((err: grpc.ServiceError | null) => (err ? reject(err) : resolve())) as grpc.ClientWritableStream<object>;
    call.write({
      identifier: { node: { id: 'envoy-1' }, log_name: 'voicegate' },
      http_logs: {
        log_entry: [
          {
            common_properties: { start_time: { seconds: '1740823200', nanos: 0 }, duration: { seconds: '1', nanos: 0 }, metadata: forwarded(r), stream_id: `s${++requestSeq}`, ...extra },
            request: { request_method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', request_id: `log-${requestSeq}` },
            response: { response_code: { value: 200 } },
          },
        ],
      },
    });
    call.end();
  });
}

const ttsInUse = () => ledger.inUse('account', 'smallest-tts', 'tts_units');

/** Polls `read` until it returns `want` (no timing is asserted; the test's timeout bounds it). */
async function until(read: () => number, want: number): Promise<void> {
  while (read() !== want) await new Promise((r) => setTimeout(r, 10));
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Ends every held slot (a test's leftovers) so the next test starts from zero. */
function releaseEverything(): void {
  slots.releaseAll();
}

describe('Check under Envoy takes units; the ext_proc stream, the access log or the sweeper gives them back', () => {
  it('N concurrent Checks on an account with 2 units: 2 allowed with a slot, the rest 429 naming the account limit', async () => {
    const rejectedBefore = await metric('voicegate_limit_rejections_total', 'limit="account"');
    const answers = await Promise.all(['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((u) => check(u, 'tts')));
    const allowed = answers.filter((r) => r.status?.code === 0);
    const refused = answers.filter((r) => r.status?.code !== 0);
    expect(allowed).toHaveLength(2);
    expect(refused).toHaveLength(4);
    for (const r of allowed) expect(slotOf(r)).toMatch(/^[0-9a-f]{8}\.\w+$/);
    expect(new Set(allowed.map(slotOf)).size).toBe(2);
    for (const r of refused) {
      expect(r.denied_response?.status?.code).toBe('TooManyRequests');
      const headers = Object.fromEntries((r.denied_response?.headers ?? []).map((h) => [h.header!.key, h.header!.value]));
      expect(headers['retry-after']).toBe('1');
      expect(headers['content-type']).toBe('application/json');
      // The same body the edge sends (core/limits/responses.ts).
      expect(JSON.parse(r.denied_response!.body!)).toEqual({
        error: {
          code: 'account_limit_exceeded',
          message: 'account "smallest-tts" has all 2 concurrency unit(s) of this gateway in use; try again in 1 s',
          scope: 'account',
          limit: 'concurrency',
          retry_after_seconds: 1,
        },
      });
      expect(slotOf(r)).toBeUndefined();
    }
    expect(ttsInUse()).toBe(2);
    expect(await metric('voicegate_limit_units_in_use', 'account="smallest-tts",pool="tts_units"')).toBe(2);
    expect(await metric('voicegate_limit_units_capacity', 'account="smallest-tts",pool="tts_units"')).toBe(2);
    expect(await metric('voicegate_limit_rejections_total', 'limit="account"')).toBe(rejectedBefore + 4);
    releaseEverything();
  });

  it('ending the ext_proc stream frees its unit; a claimed slot outlives the claim timeout', async () => {
    const first = await check('b1', 'tts');
    const second = await check('b2', 'tts');
    expect([first.status?.code, second.status?.code]).toEqual([0, 0]);
    const s1 = openStream(first);
    const s2 = openStream(second);
    await until(() => slots.unclaimed, 0);
    // Well past the claim timeout: claimed slots are not swept.
    await new Promise((r) => setTimeout(r, CLAIM_TIMEOUT_MS * 2));
    expect(ttsInUse()).toBe(2);
    expect((await check('b3', 'tts')).status?.code).not.toBe(0);

    s1.end(); // the request ended: Envoy half-closes the stream
    await until(ttsInUse, 1);
    const third = await check('b4', 'tts');
    expect(third.status?.code).toBe(0);

    s2.cancel(); // a client abort: Envoy resets the stream
    await until(ttsInUse, 1);
    expect(await metric('voicegate_limit_units_in_use', 'account="smallest-tts",pool="tts_units"')).toBe(1);
    releaseEverything();
  });

  it('a Check whose ext_proc stream never comes is freed by the sweeper', async () => {
    const sweptBefore = await metric('voicegate_limit_slot_releases_total', 'by="sweeper"');
    const orphan = await check('c1', 'tts');
    expect(orphan.status?.code).toBe(0);
    expect(ttsInUse()).toBe(1);
    await until(ttsInUse, 0);
    expect(await metric('voicegate_limit_slot_releases_total', 'by="sweeper"')).toBe(sweptBefore + 1);
    // A stream that shows up after the sweep claims nothing and frees nothing.
    const held = await check('c2', 'tts');
    const heldStream = openStream(held);
    await until(() => slots.unclaimed, 0);
    const late = openStream(orphan);
    late.end();
    await new Promise((r) => setTimeout(r, 50));
    expect(ttsInUse()).toBe(1);
    heldStream.end();
    await until(ttsInUse, 0);
  });

  it('stream end and access log together free a unit once: another request keeps its unit', async () => {
    const a = await check('d1', 'tts');
    const b = await check('d2', 'tts');
    const sa = openStream(a);
    const sb = openStream(b);
    await until(() => slots.unclaimed, 0);
    expect(ttsInUse()).toBe(2);
    const released = async () =>
      (await metric('voicegate_limit_slot_releases_total', 'by="stream"')) + (await metric('voicegate_limit_slot_releases_total', 'by="access_log"'));
    const before = await released();

    // a: the stream ends first, then its access-log entry arrives, twice (a redelivery).
    sa.end();
    await until(ttsInUse, 1);
    await sendAccessLog(a);
    await sendAccessLog(a);
    // b: the access log comes first (its stream still open), then the stream ends.
    await sendAccessLog(b, { access_log_type: 'DownstreamPeriodic' }); // mid-request entry: holds on
    expect(ttsInUse()).toBe(1);
    await sendAccessLog(b, { access_log_type: 'DownstreamEnd' });
    await until(ttsInUse, 0);
    sb.end();
    await new Promise((r) => setTimeout(r, 50));

    // Freed exactly what was taken: a third request's unit is still counted.
    const c = await check('d3', 'tts');
    openStream(c);
    await until(() => slots.unclaimed, 0);
    await sendAccessLog(a);
    sa.end();
    await new Promise((r) => setTimeout(r, 50));
    expect(ttsInUse()).toBe(1);
    expect((await released()) - before).toBe(2);
    releaseEverything();
  });

  it('an STT WebSocket upgrade takes an STT unit; a TTS WebSocket is left to the edge; the edge client admits itself', async () => {
    const stt = await check('e1', 'stt-ws');
    expect(stt.status?.code).toBe(0);
    expect(slotOf(stt)).toBeDefined();
    expect(ledger.inUse('account', 'smallest-stt', 'stt_units')).toBe(1);
    expect(await metric('voicegate_limit_units_in_use', 'account="smallest-stt",pool="stt_units"')).toBe(1);

    const tts = await check('e2', 'tts-ws');
    expect(tts.status?.code).toBe(0);
    expect(slotOf(tts)).toBeUndefined();
    expect(ledger.inUse('account', 'smallest-tts', 'ws_slots')).toBe(0);

    // The embedded edge asks Check over gRPC and takes the units in its own ledger.
    const edgeClient = createGrpcAuthorizer(address, { timeoutMs: 5_000 });
    try {
      const token = await signDevToken(snapshot, { user: 'e3', teams: ['voice'] });
      const d = await edgeClient.check({
        method: 'POST',
        path: '/smallest/waves/v1/lightning-v3.1/get_speech',
        headers: { ':method': 'POST', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: new TextEncoder().encode('{"text":"hi","voice_id":"magnus"}'),
      });
      expect(d.kind).toBe('allow');
      expect(ttsInUse()).toBe(0);
    } finally {
      edgeClient.close();
    }
    releaseEverything();
    expect(ledger.inUse('account', 'smallest-stt', 'stt_units')).toBe(0);
  });

  it("a user's cap refuses with the user named and counts as a user rejection", async () => {
    const before = await metric('voicegate_limit_rejections_total', 'limit="user"');
    const ok = await check('capped', 'tts');
    expect(ok.status?.code).toBe(0);
    const over = await check('capped', 'tts');
    expect(over.denied_response?.status?.code).toBe('TooManyRequests');
    expect(JSON.parse(over.denied_response!.body!).error).toMatchObject({ code: 'user_limit_exceeded', scope: 'user', limit: 'max_units' });
    expect(await metric('voicegate_limit_rejections_total', 'limit="user"')).toBe(before + 1);
    expect(ttsInUse()).toBe(1);
    releaseEverything();
  });
});
