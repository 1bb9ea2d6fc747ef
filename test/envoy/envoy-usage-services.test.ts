/**
 * An Envoy-shaped gRPC client (Envoy's real protos) drives ext_proc Process and the access-log
 * service; the spans that come out are checked.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEnvoyProtos, lookup } from '../../protos/envoy-protos.ts';
import { MemorySink, testSnapshot } from '../usage/helpers.ts';
import { registerAccessLogService } from '../../extproc/adapters/envoy/access-log-service.ts';
import { registerExtProcService } from '../../extproc/adapters/envoy/ext-proc-service.ts';

type ClientCtor = new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client & Record<string, (...a: unknown[]) => unknown>;

const protos = loadEnvoyProtos();
const sink = new MemorySink();
const server = new grpc.Server();
let extProc: InstanceType<ClientCtor>;
let als: InstanceType<ClientCtor>;
const SECRET = 'sk_provider_SECRET_value';

beforeAll(async () => {
  registerExtProcService(server, protos, sink);
  registerAccessLogService(server, protos, sink, { snapshot: testSnapshot });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const addr = `127.0.0.1:${port}`;
  extProc = new (lookup<ClientCtor>(protos, 'envoy.service.ext_proc.v3.ExternalProcessor'))(addr, grpc.credentials.createInsecure());
  als = new (lookup<ClientCtor>(protos, 'envoy.service.accesslog.v3.AccessLogService'))(addr, grpc.credentials.createInsecure());
});

afterAll(() => {
  extProc.close();
  als.close();
  server.forceShutdown();
});

const str = (v: string) => ({ stringValue: v });
const num = (v: number) => ({ numberValue: v });
const hdr = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });

function authzMetadata(fields: Record<string, { stringValue: string } | { numberValue: number }>) {
  return { filter_metadata: { 'envoy.filters.http.ext_authz': { fields } } };
}

/** Runs one Process stream: sends `msgs`, half-closes, collects the replies. */
function process(msgs: object[]): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const call = extProc.Process!() as grpc.ClientDuplexStream<object, Record<string, unknown>>;
    const replies: Record<string, unknown>[] = [];
    call.on('data', (r: Record<string, unknown>) => replies.push(r));
    call.on('end', () => resolve(replies));
    call.on('error', reject);
    for (const m of msgs) call.write(m);
    call.end();
  });
}

function sendLogs(entries: object[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = als.StreamAccessLogs!((err: grpc.ServiceError | null) => (err ? reject(err) : resolve())) as grpc.ClientWritableStream<object>;
    call.write({ identifier: { node: { id: 'envoy-1' }, log_name: 'voicegate' }, http_logs: { log_entry: entries.slice(0, 1) } });
    if (entries.length > 1) call.write({ http_logs: { log_entry: entries.slice(1) } });
    call.end();
  });
}

const ttsMeta = authzMetadata({
  user: str('alice'), teams: str('ops,voice'), provider: str('smallest'), model: str('lightning-v3.1'), model_type: str('tts'),
  account: str('smallest-tts'), route_kind: str('rest'), endpoint: str('tts.sync'), characters: num(1000), config_version: num(7),
});

describe('Envoy ext_proc + access-log services', () => {
  it('ext_proc answers each message with its matching CONTINUE, nothing in observability mode', async () => {
    const replies = await process([
      { request_headers: { headers: { headers: [hdr(':path', '/x'), hdr('x-request-id', 'env-0')] }, end_of_stream: true } },
      { response_headers: { headers: { headers: [hdr(':status', '200')] } } },
    ]);
    expect(replies.map((r) => r.response)).toEqual(['request_headers', 'response_headers']);
    expect((replies[0]!.request_headers as { response: { status: string } }).response.status).toBe('CONTINUE');
    const quiet = await process([
      { observability_mode: true, request_headers: { headers: { headers: [hdr('x-request-id', 'env-q')] } } },
      { observability_mode: true, response_headers: { headers: { headers: [hdr(':status', '200')] } } },
    ]);
    expect(quiet).toEqual([]);
  });

  it('one span per access-log entry, joined with what ext_proc saw, without credentials', async () => {
    sink.spans.length = 0;
    await process([
      {
        request_headers: { headers: { headers: [
          hdr(':path', '/smallest/waves/v1/lightning-v3.1/get_speech'), hdr('x-request-id', 'env-1'),
          hdr('authorization', `Bearer ${SECRET}`), hdr('traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
        ] } },
        metadata_context: ttsMeta,
      },
      { response_headers: { headers: { headers: [hdr(':status', '200'), hdr('x-request-id', 'prov-abc'), hdr('set-cookie', SECRET)] } } },
    ]);
    const start = { seconds: '1740823200', nanos: 0 };
    await sendLogs([
      {
        common_properties: {
          start_time: start, duration: { seconds: '1', nanos: 250_000_000 }, time_to_first_downstream_tx_byte: { seconds: '0', nanos: 300_000_000 },
          metadata: ttsMeta, stream_id: 's1',
        },
        request: { request_method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', request_id: 'env-1', request_body_bytes: '1050',
          request_headers: { authorization: `Bearer ${SECRET}`, 'x-api-key': SECRET, cookie: SECRET } },
        response: { response_code: { value: 200 }, response_body_bytes: '88200' },
      },
      {
        common_properties: {
          start_time: start, duration: { seconds: '30', nanos: 0 }, stream_id: 's2',
          metadata: authzMetadata({ user: str('bob'), provider: str('smallest'), model: str('pulse'), model_type: str('stt'), account: str('smallest-stt'), route_kind: str('websocket') }),
        },
        request: { request_method: 'GET', path: '/smallest/waves/v1/stt/live?model=pulse&sample_rate=16000&encoding=linear16', request_id: 'env-2', request_body_bytes: '960000' },
        response: { response_code: { value: 101 }, response_body_bytes: '4000' },
      },
      {
        common_properties: { start_time: start, duration: { seconds: '0', nanos: 2_000_000 }, stream_id: 's3',
          response_flags: { unauthorized_details: { reason: 'EXTERNAL_SERVICE' } },
          metadata: authzMetadata({ user: str('mallory'), provider: str('smallest'), model: str('lightning-v3.1') }) },
        request: { request_method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', request_id: 'env-3' },
        response: { response_code: { value: 403 } },
      },
    ]);
    expect(sink.spans).toHaveLength(3);
    const [tts, stt, denied] = sink.spans;
    expect(tts).toMatchObject({
      source: 'envoy', user: 'alice', teams: ['ops', 'voice'], model: 'lightning-v3.1', status: 200, characters: 1000,
      costUsd: '0.0195', estimated: false, durationMs: 1250, ttfbMs: 300, bytesIn: 1050, bytesOut: 88200,
      requestId: 'env-1', providerRequestId: 'prov-abc', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7',
      startTime: '2025-03-01T10:00:00.000Z', endTime: '2025-03-01T10:00:01.250Z', configVersion: 7,
    });
    expect(stt).toMatchObject({ user: 'bob', routeKind: 'websocket', status: 101, audioSeconds: 30, estimated: true, costUsd: '0.003', path: '/smallest/waves/v1/stt/live' });
    expect(denied).toMatchObject({ decision: 'deny', status: 403, costUsd: '0', user: 'mallory' });
    const json = JSON.stringify(sink.spans);
    expect(json).not.toContain(SECRET);
    expect(json.toLowerCase()).not.toContain('authorization');
    expect(new Set(sink.spans.map((s) => s.spanId)).size).toBe(3);
  });
});
