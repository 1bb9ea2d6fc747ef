/**
 * The hot-path codecs (protobufjs on Envoy's own types) against proto-loader's generic ones: the
 * same CheckRequest bytes must yield the same CheckInput, and our CheckResponse bytes must read
 * back exactly as proto-loader's encoding of the same decision does.
 */
import type * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { authzUnavailable, deny } from '../../core/decision/decide.ts';
import type { Decision } from '../../core/decision/types.ts';
import { decodeCheckRequest, fromCheckRequest } from './check-request.ts';
import { checkResponseEncoder, toCheckResponse } from './check-response.ts';
import { loadEnvoyProtos, loadEnvoyRoot, lookup } from '../../../protos/envoy-protos.ts';

const check = lookup<grpc.ServiceClientConstructor>(loadEnvoyProtos(), 'envoy.service.auth.v3.Authorization').service['Check']!;
const root = loadEnvoyRoot();
const requestType = root.lookupType('envoy.service.auth.v3.CheckRequest');
const encode = checkResponseEncoder(root);

const requests: Record<string, unknown> = {
  'TTS with body and every attribute Envoy fills': {
    attributes: {
      source: { address: { socket_address: { address: '10.1.2.3', port_value: 50123 } }, principal: 'spiffe://x' },
      destination: { address: { socket_address: { address: '10.0.0.1', port_value: 8080 } } },
      request: {
        time: { seconds: '1795600000', nanos: 5 },
        http: {
          id: '5f1c…-req',
          method: 'POST',
          path: '/smallest/waves/v1/tts?model=lightning_v3.1&token=abc',
          host: 'gw.example.com',
          scheme: 'https',
          protocol: 'HTTP/1.1',
          size: '52',
          headers: { ':method': 'POST', ':path': '/smallest/waves/v1/tts', 'Content-Type': 'application/json', authorization: 'Bearer a.b.c', 'x-envoy-auth-partial-body': 'false' },
          raw_body: Buffer.from('{"text":"héllo 👋","voice_id":"magnus"}'),
        },
      },
      context_extensions: { route: 'tts-sync' },
      metadata_context: { filter_metadata: { ns: { fields: { k: { stringValue: 'v' } } } } },
    },
  },
  'WebSocket upgrade, no body': {
    attributes: { request: { http: { method: 'GET', path: '/smallest/waves/v1/stt/live?model=pulse', host: 'gw', headers: { upgrade: 'websocket', connection: 'Upgrade' } } } },
  },
  'body as a string (without pack_as_bytes)': {
    attributes: { request: { http: { method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', body: '{"text":"hi"}', headers: {} } } },
  },
  'no http attributes at all': {},
};

describe('CheckRequest decoding', () => {
  it.each(Object.entries(requests))('%s: same input as proto-loader + zod', (_name, req) => {
    const bytes = check.requestSerialize(req);
    expect(decodeCheckRequest(bytes, requestType)).toEqual(fromCheckRequest(check.requestDeserialize(bytes)));
  });

  it('treats malformed bytes as a failed parse, not an exception', () => {
    expect(decodeCheckRequest(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]), requestType)).toMatchObject({ ok: false });
  });
});

const decisions: Record<string, Decision> = {
  allow: {
    kind: 'allow',
    headersToSet: [{ key: 'authorization', value: 'Bearer sk_test' }],
    headersToRemove: ['x-api-key', 'cookie', 'proxy-authorization'],
    queryParametersToRemove: ['token'],
    metadata: { user: 'alice', teams: 'voice', model: 'lightning-v3.1', route_kind: 'rest', characters: 7, config_version: 3 },
  },
  'deny 401': deny('missing_token', 'send a token', {}, { 'www-authenticate': 'Bearer realm="voicegate"' }),
  'deny 403 with metadata': deny('not_entitled', 'no', { user: 'bob', model: 'lightning-v3.1', account: 'tts' }),
  'deny 503': authzUnavailable(),
};

describe('CheckResponse encoding', () => {
  it.each(Object.entries(decisions))('%s: reads back like proto-loader’s own encoding', (_name, decision) => {
    const ours = check.responseDeserialize(Buffer.from(encode(decision)));
    const theirs = check.responseDeserialize(check.responseSerialize(toCheckResponse(decision)));
    expect(ours).toEqual(theirs);
  });
});
