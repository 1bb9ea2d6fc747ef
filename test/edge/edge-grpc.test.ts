import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { request } from 'undici';
import type { Authorizer, Decision } from '../../extproc/core/decision/types.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import { decodeCheckResponse } from '../../extproc/adapters/envoy/check-response-decode.ts';
import { deny } from '../../extproc/core/decision/decide.ts';
import { DENIALS, isDenyCode, type DenialCode } from '../../extproc/core/decision/denials.ts';
import { toCheckResponse } from '../../extproc/adapters/envoy/check-response.ts';
import { startExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import { PROVIDER_KEY, TestAuthorizer, readBody, snapshotFor, startUpstream } from './helpers.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const silent = pino({ level: 'silent' });

async function grpcEdge(authorizer: Authorizer, timeoutMs?: number) {
  let upstreamAuth: string | undefined;
  let upstreamBody = '';
  const upstream = await startUpstream(async (req, res) => {
    upstreamAuth = req.headers.authorization;
    upstreamBody = (await readBody(req)).toString();
    res.writeHead(200, { 'content-type': 'audio/wav', 'x-external-request-id': 'e1' });
    res.end('audio');
  });
  const source = new StaticSnapshotSource(snapshotFor(upstream.url));
  const extproc = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer, source, logger: silent });
  const client = createGrpcAuthorizer(`127.0.0.1:${extproc.port}`, timeoutMs !== undefined ? { timeoutMs } : {});
  const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client });
  cleanups.push(() => upstream.close(), () => extproc.close(0), () => client.close(), () => edge.close());
  return { edge, upstreamAuth: () => upstreamAuth, upstreamBody: () => upstreamBody };
}

describe('edge with the gRPC authorizer (Envoy ext_authz wire protocol)', () => {
  it('allows over the wire: body sent as raw_body, provider key injected, token stripped', async () => {
    const authorizer = new TestAuthorizer();
    const { edge, upstreamAuth, upstreamBody } = await grpcEdge(authorizer, 2000);
    const json = '{"text":"hello over grpc","voice_id":"magnus"}';
    const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech?token=good`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'sk_caller' },
      body: json,
    });
    expect(r.statusCode).toBe(200);
    expect(r.headers['x-external-request-id']).toBe('e1');
    expect(await r.body.text()).toBe('audio');
    expect(upstreamAuth()).toBe(`Bearer ${PROVIDER_KEY}`);
    expect(upstreamBody()).toBe(json);
    const seen = authorizer.inputs[0]!;
    expect(Buffer.from(seen.body!).toString()).toBe(json);
    expect(seen.path).toBe('/smallest/waves/v1/lightning-v3.1/get_speech?token=good');
    expect(seen.headers[':method']).toBe('POST');
    expect(seen.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('denies over the wire with the status, www-authenticate and JSON body', async () => {
    const { edge } = await grpcEdge(new TestAuthorizer(), 2000);
    const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, { method: 'POST', body: '{}' });
    expect(r.statusCode).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer realm="voicegate"');
    expect(r.headers['content-type']).toBe('application/json');
    expect(await r.body.json()).toEqual({ error: { code: 'missing_token', message: 'denied: missing_token' } });
    const f = await request(`${edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer forbidden' } });
    expect(f.statusCode).toBe(403);
    expect(((await f.body.json()) as { error: { code: string } }).error.code).toBe('not_entitled');
  });

  it('fails closed with 503 authz_unavailable when the decision is too slow', async () => {
    const slow: Authorizer = {
      check: (input) => new Promise<Decision>((r) => setTimeout(() => r(new TestAuthorizer().check(input) as never), 600)),
    };
    const { edge } = await grpcEdge(slow, 100);
    const r = await request(`${edge.url}/smallest/waves/v1/health`, { headers: { authorization: 'Bearer good' } });
    expect(r.statusCode).toBe(503);
    expect(await r.body.json()).toMatchObject({ error: { code: 'authz_unavailable' } });
  });

  it('fails closed with 503 authz_unavailable when nothing listens', async () => {
    const client = createGrpcAuthorizer('127.0.0.1:1');
    cleanups.push(() => client.close());
    const d = await client.check({ method: 'GET', path: '/smallest/waves/v1/health', headers: {} });
    expect(d).toMatchObject({ kind: 'deny', status: 503, code: 'authz_unavailable' });
  });
});

describe('decodeCheckResponse', () => {
  it('round-trips an allow, keeping header sets, removals, query removals and metadata', () => {
    const allow: Decision = {
      kind: 'allow',
      headersToSet: [{ key: 'authorization', value: 'Bearer sk_x' }],
      headersToRemove: ['x-api-key', 'cookie'],
      queryParametersToRemove: ['token'],
      metadata: { user: 'alice', provider: 'smallest', characters: 11, route_kind: 'sse', upstream_path: '/waves/v1/tts/live' },
    };
    expect(decodeCheckResponse(toCheckResponse(allow))).toEqual(allow);
  });

  it('round-trips every denial a decision can carry, by status name, body and headers', () => {
    for (const code of Object.keys(DENIALS) as DenialCode[]) {
      if (!isDenyCode(code)) continue;
      const d = deny(code, 'fix it', { user: 'bob' }, DENIALS[code].status === 401 ? { 'www-authenticate': 'Bearer' } : {});
      expect(decodeCheckResponse(toCheckResponse(d))).toEqual(d);
    }
  });

  it('reads any denial outside the closed set of codes as the one "cannot decide" answer (fail closed)', () => {
    const cannot = { kind: 'deny', status: 503, code: 'authz_unavailable' };
    // Envoy's bare 403, a body that is not ours, a code we do not issue, a status that disagrees with the code.
    expect(decodeCheckResponse({ status: { code: 7 } })).toMatchObject(cannot);
    expect(
      decodeCheckResponse({ status: { code: 7 }, denied_response: { status: { code: 'TooManyRequests' }, body: 'slow down' } }),
    ).toMatchObject(cannot);
    const foreign = JSON.stringify({ error: { code: 'some_code', message: 'x' } });
    expect(decodeCheckResponse({ status: { code: 7 }, denied_response: { status: { code: 'Forbidden' }, body: foreign } })).toMatchObject(cannot);
    const entitled = JSON.stringify({ error: { code: 'not_entitled', message: 'x' } });
    expect(decodeCheckResponse({ status: { code: 7 }, denied_response: { status: { code: 'NotFound' }, body: entitled } })).toMatchObject(cannot);
    expect(decodeCheckResponse({ status: { code: 7 }, denied_response: { status: { code: 'Forbidden' }, body: entitled } })).toMatchObject({
      kind: 'deny',
      status: 403,
      code: 'not_entitled',
    });
    expect(decodeCheckResponse('garbage')).toMatchObject(cannot);
  });
});
