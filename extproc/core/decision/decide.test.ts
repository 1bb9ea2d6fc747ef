/**
 * The decision core without transport: `decide()` over every endpoint spec and path generation,
 * its 4xx/503 answers, query-token removal, token lookup, and the verification cache.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { decide } from './decide.ts';
import { CATALOGUES, matchEndpoint, parsePublicPath } from '../catalogue/endpoints.ts';
import { IdentityVerifier, type IdentityResult } from '../identity/identity.ts';
import { findToken } from '../identity/token.ts';
import { countCodePoints, readTtsBody } from './tts-body.ts';
import type { Allow, CheckInput, Decision, Deny } from './types.ts';
import type { IssuerConfig, Snapshot } from '../config/snapshot.ts';
import { accountKeys, claims, loadTestSnapshot, makeKey, nowSec, sign, type TestKey } from '../../../test/authz/fixtures.ts';

const keys = accountKeys();
let snapshot: Snapshot;

beforeAll(async () => {
  snapshot = await loadTestSnapshot([{ issuer: 'https://idp.test/unit', keys: [await makeKey('EdDSA')] }], keys);
});

const who = (user: string, teams: string[] = []): IdentityResult => ({
  ok: true,
  cached: false,
  identity: { issuer: 'https://idp.test/unit', user, teams, roles: [] },
});
const alice = who('alice', ['voice']);
const req = (method: string, path: string, body?: string, headers: Record<string, string> = {}): CheckInput => ({
  method,
  path,
  headers: { authorization: 'Bearer gateway-jwt', ...headers },
  ...(body !== undefined ? { body: new TextEncoder().encode(body) } : {}),
});

function allowed(d: Decision): Allow {
  if (d.kind !== 'allow') throw new Error(`expected allow, got ${d.status} ${d.code}: ${d.message}`);
  return d;
}
function denied(d: Decision, status: Deny['status'], code: string): Deny {
  expect(d.kind).toBe('deny');
  const deny = d as Deny;
  expect({ status: deny.status, code: deny.code }).toEqual({ status, code });
  return deny;
}

const TTS_JSON = JSON.stringify({ text: 'hi there', voice_id: 'magnus' });

describe('endpoint catalogue: every spec, every path generation', () => {
  // [method, provider path after /smallest, body, endpoint id, route kind, model, upstream path]
  const table: Array<[string, string, string | undefined, string, string, string | undefined, string]> = [
    ['POST', '/waves/v1/lightning-v3.1/get_speech', TTS_JSON, 'tts.sync', 'rest', 'lightning-v3.1', '/waves/v1/lightning-v3.1/get_speech'],
    ['POST', '/api/v1/lightning-v3.1/get_speech', TTS_JSON, 'tts.sync', 'rest', 'lightning-v3.1', '/waves/v1/lightning-v3.1/get_speech'],
    ['POST', '/api/v1/lightning-large/get_speech', TTS_JSON, 'tts.sync', 'rest', 'lightning-large', '/waves/v1/lightning-large/get_speech'],
    ['POST', '/waves/v1/lightning-v2/get_speech', TTS_JSON, 'tts.sync', 'rest', 'lightning-v2', '/waves/v1/lightning-v2/get_speech'],
    ['POST', '/waves/v1/lightning-v3.1/stream', TTS_JSON, 'tts.sse', 'sse', 'lightning-v3.1', '/waves/v1/lightning-v3.1/stream'],
    ['POST', '/api/v1/lightning-v3.1/stream', TTS_JSON, 'tts.sse', 'sse', 'lightning-v3.1', '/waves/v1/lightning-v3.1/stream'],
    ['GET', '/waves/v1/lightning-v3.1/get_speech/stream?timeout=60', undefined, 'tts.ws', 'websocket', 'lightning-v3.1', '/waves/v1/lightning-v3.1/get_speech/stream?timeout=60'],
    ['GET', '/waves/v1/lightning-v3.1/get_voices', undefined, 'voices.list', 'rest', 'lightning-v3.1', '/waves/v1/lightning-v3.1/get_voices'],
    ['GET', '/api/v1/lightning-large/get_cloned_voices', undefined, 'voices.cloned.list', 'rest', 'lightning-large', '/waves/v1/lightning-large/get_cloned_voices'],
    ['POST', '/api/v1/lightning-large/add_voice', 'multipart', 'voices.cloned.add', 'rest', 'lightning-large', '/waves/v1/lightning-large/add_voice'],
    ['DELETE', '/api/v1/lightning-large', '{"voiceId":"voice_1"}', 'voices.cloned.delete', 'rest', 'lightning-large', '/waves/v1/lightning-large'],
    ['GET', '/api/v1/lightning-v3.1/get_speech/stream', undefined, 'tts.ws', 'websocket', 'lightning-v3.1', '/waves/v1/lightning-v3.1/get_speech/stream'],
    ['POST', '/waves/v1/tts', JSON.stringify({ model: 'lightning_v3.1_pro', text: 'x' }), 'tts.unified.sync', 'rest', 'lightning-v3.1', '/waves/v1/tts'],
    ['POST', '/waves/v1/tts/', TTS_JSON, 'tts.unified.sync', 'rest', 'lightning-v3.1', '/waves/v1/tts/'],
    ['POST', '/api/v1/tts', TTS_JSON, 'tts.unified.sync', 'rest', 'lightning-v3.1', '/waves/v1/tts'],
    ['POST', '/waves/v1/tts/live', JSON.stringify({ model: 'lightning', text: 'x' }), 'tts.unified.sse', 'sse', 'lightning', '/waves/v1/tts/live'],
    ['GET', '/waves/v1/tts/live?model=lightning_v3.1', undefined, 'tts.unified.ws', 'websocket', 'lightning-v3.1', '/waves/v1/tts/live?model=lightning_v3.1'],
    ['GET', '/waves/v1/tts/live', undefined, 'tts.unified.ws', 'websocket', 'lightning-v3.1', '/waves/v1/tts/live'],
    ['POST', '/waves/v1/pulse/get_text?language=en', undefined, 'stt.rest', 'rest', 'pulse', '/waves/v1/pulse/get_text?language=en'],
    ['POST', '/api/v1/pulse/get_text', undefined, 'stt.rest', 'rest', 'pulse', '/waves/v1/pulse/get_text'],
    ['GET', '/waves/v1/pulse/get_text?language=multi&encoding=linear16', undefined, 'stt.ws', 'websocket', 'pulse', '/waves/v1/pulse/get_text?language=multi&encoding=linear16'],
    ['POST', '/waves/v1/stt/?model=pulse', undefined, 'stt.unified.rest', 'rest', 'pulse', '/waves/v1/stt/?model=pulse'],
    ['POST', '/waves/v1/stt', undefined, 'stt.unified.rest', 'rest', 'pulse', '/waves/v1/stt'],
    ['GET', '/waves/v1/stt/live?model=pulse', undefined, 'stt.unified.ws', 'websocket', 'pulse', '/waves/v1/stt/live?model=pulse'],
    ['GET', '/waves/v1/stt/live/', undefined, 'stt.unified.ws', 'websocket', 'pulse', '/waves/v1/stt/live/'],
    ['GET', '/waves/v1/health', undefined, 'health', 'rest', undefined, '/waves/v1/health'],
  ];
  for (const [method, path, body, endpoint, kind, model, upstream] of table) {
    it(`${method} ${path} → ${endpoint}`, () => {
      const d = allowed(decide(req(method, `/smallest${path}`, body), snapshot, alice));
      expect(d.metadata).toMatchObject({ provider: 'smallest', endpoint, route_kind: kind, upstream_path: upstream, user: 'alice' });
      if (model === undefined) {
        // Model-less endpoints get no provider key: the caller's own authorization is removed instead.
        expect(d.headersToSet).toEqual([]);
        expect(d.headersToRemove).toContain('authorization');
        expect(d.metadata.model).toBeUndefined();
      } else {
        expect(d.metadata.model).toBe(model);
        const key = d.metadata.model_type === 'stt' ? keys.stt : keys.tts;
        expect(d.headersToSet).toEqual([{ key: 'authorization', value: `Bearer ${key}` }]);
        expect(d.headersToRemove).not.toContain('authorization');
      }
    });
  }

  it('every catalogue spec is reached by the table above', () => {
    const reached = new Set(table.map(([, , , id]) => id));
    expect([...CATALOGUES.get('smallest')!.endpoints.map((e) => e.id)].sort()).toEqual([...reached].sort());
  });

  it('methods are compared exactly, as Envoy does: `post` is no POST route', () => {
    denied(decide(req('post', '/smallest/waves/v1/lightning-v3.1/get_speech', TTS_JSON), snapshot, alice), 404, 'unknown_endpoint');
  });

  it('`%` in a model path segment → 400 invalid_path; undecodable ones are not matched', () => {
    expect(matchEndpoint(CATALOGUES.get('smallest')!, 'POST', '/waves/v1/lightning%2Dv3.1/get_speech')?.pathModel).toBe('lightning-v3.1');
    denied(decide(req('POST', '/smallest/waves/v1/lightning%2Dv3.1/get_speech', TTS_JSON), snapshot, alice), 400, 'invalid_path');
    denied(decide(req('GET', '/smallest/waves/v1/pulse%2Dpro/get_text'), snapshot, alice), 400, 'invalid_path');
    denied(decide(req('POST', '/smallest/waves/v1/%E0%A4%A/get_speech'), snapshot, alice), 404, 'unknown_endpoint');
  });

  it('parsePublicPath splits provider, canonical path and raw query', () => {
    expect(parsePublicPath('/smallest/api/v1/pulse/get_text?a=1&b')).toEqual({ provider: 'smallest', upstreamPath: '/waves/v1/pulse/get_text', query: 'a=1&b' });
    expect(parsePublicPath('/smallest')).toBeUndefined();
    expect(parsePublicPath('//waves/v1/tts')).toBeUndefined();
    expect(parsePublicPath('other/x')).toBeUndefined();
  });
});

describe('method mismatches and unknown endpoints → 404 unknown_endpoint', () => {
  const cases: Array<[string, string]> = [
    ['GET', '/waves/v1/lightning-v3.1/get_speech'],
    ['POST', '/waves/v1/lightning-v3.1/get_speech/stream'],
    ['GET', '/waves/v1/lightning-v3.1/stream'],
    ['PUT', '/waves/v1/lightning-v3.1/get_speech'],
    ['DELETE', '/waves/v1/pulse/get_text'],
    ['GET', '/waves/v1/tts'],
    ['PATCH', '/waves/v1/tts/live'],
    ['GET', '/waves/v1/stt'],
    ['POST', '/waves/v1/stt/live'],
    ['POST', '/waves/v1/health'],
    ['HEAD', '/waves/v1/health'],
    ['GET', '/waves/v1/voices'],
    ['POST', '/waves/v2/lightning-v3.1/get_speech'],
    ['POST', '/waves/v1/lightning-v3.1/get_speech/extra'],
  ];
  for (const [method, path] of cases) {
    it(`${method} ${path}`, () => {
      const d = denied(decide(req(method, `/smallest${path}?token=secret-token`), snapshot, alice), 404, 'unknown_endpoint');
      expect(d.message).toContain(method);
      expect(d.message).not.toContain('secret-token');
      expect(d.metadata).toMatchObject({ user: 'alice', provider: 'smallest' });
    });
  }

  it('a provider that is configured but has no catalogue, or has a catalogue but no config, is unknown', () => {
    const without: Snapshot = { ...snapshot, providers: new Map() };
    denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', TTS_JSON), without, alice), 404, 'unknown_provider');
    denied(decide(req('POST', '/openai/v1/audio/speech'), snapshot, alice), 404, 'unknown_provider');
  });
});

describe('model resolution', () => {
  it('model type mismatch → 400 on path, body and query models', () => {
    const cases: Array<[string, string, string?]> = [
      ['POST', '/smallest/waves/v1/pulse/get_speech', TTS_JSON],
      ['POST', '/smallest/waves/v1/pulse/stream', TTS_JSON],
      ['GET', '/smallest/waves/v1/pulse/get_speech/stream'],
      ['POST', '/smallest/waves/v1/lightning-v3.1/get_text'],
      ['GET', '/smallest/waves/v1/lightning/get_text'],
      ['POST', '/smallest/waves/v1/tts', JSON.stringify({ model: 'pulse', text: 'x' })],
      ['GET', '/smallest/waves/v1/tts/live?model=pulse'],
      ['POST', '/smallest/waves/v1/stt?model=lightning-v3.1'],
      ['GET', '/smallest/waves/v1/stt/live?model=lightning_v3.1'],
    ];
    for (const [method, path, body] of cases) {
      const d = denied(decide(req(method, path, body), snapshot, alice), 400, 'model_type_mismatch');
      expect(d.message, path).toMatch(/is a (tts|stt) model/);
    }
  });

  it('unknown model → 404 listing the models of the right type', () => {
    const d = denied(decide(req('POST', '/smallest/waves/v1/tts', JSON.stringify({ model: 'lightning-v9', text: 'x' })), snapshot, alice), 404, 'unknown_model');
    expect(d.message).toContain('"lightning-v9"');
    expect(d.message).toContain('lightning-v3.1');
    expect(d.message).not.toContain('pulse');
    denied(decide(req('GET', '/smallest/waves/v1/stt/live?model=pulse-pro'), snapshot, alice), 404, 'unknown_model');
  });

  it('body model wins over the query model on unified TTS routes; the query is used when the body names none', () => {
    const both = allowed(decide(req('POST', '/smallest/waves/v1/tts?model=lightning', JSON.stringify({ model: 'lightning-large', text: 'x' })), snapshot, alice));
    expect(both.metadata.model).toBe('lightning-large');
    const queryOnly = allowed(decide(req('POST', '/smallest/waves/v1/tts/live?model=lightning', TTS_JSON), snapshot, alice));
    expect(queryOnly.metadata.model).toBe('lightning');
  });

  it('without a configured default, a unified route that names no model → 400 model_required', () => {
    const noDefaults: Snapshot = { ...snapshot, defaultModels: new Map() };
    denied(decide(req('POST', '/smallest/waves/v1/tts', TTS_JSON), noDefaults, alice), 400, 'model_required');
    denied(decide(req('GET', '/smallest/waves/v1/stt/live?model='), noDefaults, alice), 400, 'model_required');
  });

  it('a model whose account is missing from the snapshot → 503, never an allow without a key', () => {
    const noAccount: Snapshot = { ...snapshot, accounts: new Map() };
    denied(decide(req('POST', '/smallest/waves/v1/pulse/get_text'), noAccount, alice), 503, 'no_account');
  });

  it('characters are counted in code points from the TTS body only', () => {
    const d = allowed(decide(req('POST', '/smallest/waves/v1/tts', JSON.stringify({ text: 'héllo 👋 नमस्ते', model: 'lightning_v3.1' })), snapshot, alice));
    expect(d.metadata.characters).toBe([...'héllo 👋 नमस्ते'].length);
    const noText = allowed(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', '{"voice_id":"x"}'), snapshot, alice));
    expect(noText.metadata.characters).toBeUndefined();
    const stt = allowed(decide(req('POST', '/smallest/waves/v1/pulse/get_text', '{"text":"not counted"}'), snapshot, alice));
    expect(stt.metadata.characters).toBeUndefined();
  });

  it('a truncated unified TTS body cannot smuggle a model past the entitlement check', () => {
    // Envoy (allow_partial_message) and the edge cut the body at the decision limit and say so.
    const big = JSON.stringify({ model: 'lightning-large', text: 'x'.repeat(100) });
    const truncated = big.slice(0, 40);
    const d = denied(
      decide(req('POST', '/smallest/waves/v1/tts', truncated, { 'x-envoy-auth-partial-body': 'true' }), snapshot, alice),
      413,
      'body_too_large',
    );
    expect(d.message).toContain('model');
    // On a path-model route the model is known anyway: only the character count is lost.
    const pathRoute = allowed(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', truncated, { 'x-envoy-auth-partial-body': 'true' }), snapshot, alice));
    expect(pathRoute.metadata.characters).toBeUndefined();
    // A complete body that is not a JSON object hides its model too: refused, not defaulted.
    denied(decide(req('POST', '/smallest/waves/v1/tts', 'text=hi', { 'x-envoy-auth-partial-body': 'false' }), snapshot, alice), 400, 'invalid_body');
  });

  it('bodies the decision cannot read are refused, never decided on the default model', () => {
    const json = JSON.stringify({ text: 'hi', model: 'lightning-large' });
    const utf16 = new Uint8Array(Buffer.from(`\ufeff${json}`, 'utf16le'));
    denied(decide({ ...req('POST', '/smallest/waves/v1/tts'), body: utf16 }, snapshot, alice), 400, 'invalid_body');
    const notUtf8 = new Uint8Array([...Buffer.from('{"text":"'), 0xff, 0xfe, ...Buffer.from('","model":"lightning-large"}')]);
    denied(decide({ ...req('POST', '/smallest/waves/v1/tts/live'), body: notUtf8 }, snapshot, alice), 400, 'invalid_body');
    denied(decide(req('POST', '/smallest/waves/v1/tts', '[1,2]'), snapshot, alice), 400, 'invalid_body');
    for (const encoding of ['gzip', 'deflate', 'br', 'GZIP, identity']) {
      denied(decide(req('POST', '/smallest/waves/v1/tts', json, { 'content-encoding': encoding }), snapshot, alice), 415, 'unsupported_content_encoding');
      denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', json, { 'content-encoding': encoding }), snapshot, alice), 415, 'unsupported_content_encoding');
    }
    expect(allowed(decide(req('POST', '/smallest/waves/v1/tts', JSON.stringify({ text: 'hi' }), { 'content-encoding': 'identity' }), snapshot, alice)).metadata.model).toBe('lightning-v3.1');
    // Audio uploads are not inspected, so their encoding is the provider's business.
    expect(decide(req('POST', '/smallest/waves/v1/pulse/get_text', 'RIFF', { 'content-encoding': 'gzip' }), snapshot, alice).kind).toBe('allow');
  });

  it('a JSON body naming a key twice is ambiguous, however the second is spelled', () => {
    for (const body of [
      '{"text":"hi","model":"lightning-v3.1","model":"lightning-large"}',
      '{"text":"hi","model":"lightning-v3.1","mod\\u0065l":"lightning-large"}',
      '{"text":"hi","text":"a much longer text"}',
    ]) {
      denied(decide(req('POST', '/smallest/waves/v1/tts', body), snapshot, alice), 400, 'ambiguous_parameter');
    }
    // The same name inside a nested object is not a top-level duplicate.
    expect(allowed(decide(req('POST', '/smallest/waves/v1/tts', '{"text":"hi","x":{"model":"a"},"y":{"model":"b"}}'), snapshot, alice)).metadata.model).toBe('lightning-v3.1');
  });

  it('a path-model route refuses a body naming another model; the same model or its alias passes', () => {
    const path = '/smallest/waves/v1/lightning-v3.1/get_speech';
    denied(decide(req('POST', path, JSON.stringify({ text: 'hi', model: 'lightning-large' })), snapshot, alice), 400, 'model_conflict');
    denied(decide(req('POST', path, JSON.stringify({ text: 'hi', model: 'no-such-model' })), snapshot, alice), 400, 'model_conflict');
    denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/stream', JSON.stringify({ text: 'hi', model: 'lightning-large' })), snapshot, alice), 400, 'model_conflict');
    expect(allowed(decide(req('POST', path, JSON.stringify({ text: 'hi', model: 'lightning_v3.1' })), snapshot, alice)).metadata.model).toBe('lightning-v3.1');
    expect(allowed(decide(req('POST', path, JSON.stringify({ text: 'hi', model: 'lightning-v3.1' })), snapshot, alice)).metadata.model).toBe('lightning-v3.1');
  });
});

describe('identity and configuration failures', () => {
  it('503 authz_unavailable (the one "cannot decide" answer) without a snapshot, whoever asks', () => {
    for (const identity of [alice, { ok: false, code: 'missing_token', message: '' } as const]) {
      const d = denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech'), undefined, identity), 503, 'authz_unavailable');
      expect(d.headers).toEqual({});
    }
  });

  it('401 with WWW-Authenticate for identity failures; 503 when the issuer keys cannot be loaded', () => {
    const missing = denied(decide(req('GET', '/smallest/waves/v1/health'), snapshot, { ok: false, code: 'missing_token', message: 'send a token' }), 401, 'missing_token');
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="voicegate"');
    const expired = denied(decide(req('GET', '/smallest/waves/v1/health'), snapshot, { ok: false, code: 'token_expired', message: 'expired' }), 401, 'token_expired');
    expect(expired.headers['www-authenticate']).toBe('Bearer realm="voicegate", error="invalid_token", error_description="token_expired"');
    const jwks = denied(decide(req('GET', '/smallest/waves/v1/health'), snapshot, { ok: false, code: 'jwks_unavailable', message: 'later' }), 503, 'jwks_unavailable');
    expect(jwks.headers).toEqual({});
  });

  it('403 names the account to ask for; team and user collaborators both count', () => {
    const bob = who('bob');
    allowed(decide(req('POST', '/smallest/waves/v1/pulse/get_text'), snapshot, bob));
    const d = denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', TTS_JSON), snapshot, bob), 403, 'not_entitled');
    expect(d.message).toContain('"bob"');
    expect(d.message).toContain('smallest-tts');
    expect(d.metadata).toMatchObject({ user: 'bob', model: 'lightning-v3.1', account: 'smallest-tts' });
    denied(decide(req('GET', '/smallest/waves/v1/stt/live?model=pulse'), snapshot, who('mallory', ['voices', 'VOICE'])), 403, 'not_entitled');
  });
});

describe('query token removal', () => {
  it('removes every `token` parameter and keeps the others byte-for-byte, in order', () => {
    const query = 'language=en&token=abc&keywords=word%3A2%2Cfoo%3A1&x=a+b&empty=&flag&tokens=keep&z=%E2%9C%93';
    const d = allowed(decide(req('GET', `/smallest/waves/v1/pulse/get_text?${query}`), snapshot, alice));
    expect(d.metadata.upstream_path).toBe('/waves/v1/pulse/get_text?language=en&keywords=word%3A2%2Cfoo%3A1&x=a+b&empty=&flag&tokens=keep&z=%E2%9C%93');
    expect(d.queryParametersToRemove).toEqual(['token']);
  });

  it('leaves the query untouched when it has no token', () => {
    const d = allowed(decide(req('GET', '/smallest/waves/v1/pulse/get_text?tokens=1&a=%20b&&c'), snapshot, alice));
    expect(d.metadata.upstream_path).toBe('/waves/v1/pulse/get_text?tokens=1&a=%20b&&c');
    expect(d.queryParametersToRemove).toEqual([]);
  });

  it('drops the `?` when token was the only parameter', () => {
    const d = allowed(decide(req('GET', '/smallest/waves/v1/tts/live?token=abc'), snapshot, alice));
    expect(d.metadata.upstream_path).toBe('/waves/v1/tts/live');
    expect(d.queryParametersToRemove).toEqual(['token']);
  });
});

describe('ambiguous query parameters → 400 ambiguous_parameter', () => {
  const cases = [
    ['POST', '/smallest/waves/v1/stt?model=pulse&model=pulse-pro'],
    ['POST', '/smallest/waves/v1/stt?model=pulse&mod%65l=pulse-pro'],
    ['GET', '/smallest/waves/v1/stt/live?model=pulse&model=pulse-pro'],
    ['GET', '/smallest/waves/v1/tts/live?token=a&token=b'],
    ['GET', '/smallest/waves/v1/pulse/get_text?%74oken=a'],
    ['POST', '/smallest/waves/v1/lightning-v3.1/get_speech?model=x&model=y'],
  ] as const;
  for (const [method, path] of cases) {
    it(`${method} ${path}`, () => {
      denied(decide(req(method, path, method === 'POST' ? TTS_JSON : undefined), snapshot, alice), 400, 'ambiguous_parameter');
    });
  }
  it('an encoded token name is never the credential', () => {
    expect(findToken({}, '/x?%74oken=q.r.s')).toEqual({ found: false, malformed: false });
    expect(findToken({}, '/x?a=1&token=q%2Er.s')).toEqual({ found: true, token: 'q.r.s' });
  });
});

describe('findToken', () => {
  it('reads Bearer (any case), falls back to ?token=, flags other schemes as malformed', () => {
    expect(findToken({ authorization: 'Bearer a.b.c' }, '/x')).toEqual({ found: true, token: 'a.b.c' });
    expect(findToken({ authorization: 'bearer\ta.b.c ' }, '/x')).toEqual({ found: true, token: 'a.b.c' });
    expect(findToken({}, '/x?model=m&token=q.r.s')).toEqual({ found: true, token: 'q.r.s' });
    expect(findToken({ authorization: 'Bearer h.h.h' }, '/x?token=q.r.s')).toEqual({ found: true, token: 'h.h.h' });
    expect(findToken({ authorization: 'Basic abc' }, '/x?token=q.r.s')).toEqual({ found: false, malformed: true });
    expect(findToken({ authorization: 'Bearer a, Bearer b' }, '/x')).toEqual({ found: false, malformed: true });
    expect(findToken({}, '/x?token=')).toEqual({ found: false, malformed: false });
    expect(findToken({ authorization: '' }, '/x')).toEqual({ found: false, malformed: false });
  });
});

describe('TTS body facts', () => {
  it('reads model and code-point count, ignores what is not a JSON object', () => {
    expect(readTtsBody(new TextEncoder().encode('{"model":"lightning_v3.1","text":"a👋b"}'))).toMatchObject({ model: 'lightning_v3.1', characters: 3 });
    expect(readTtsBody(new TextEncoder().encode('[1]'))).not.toHaveProperty('model');
    expect(readTtsBody(new TextEncoder().encode('{"text":'))).not.toHaveProperty('characters');
    expect(readTtsBody(new TextEncoder().encode(JSON.stringify({ model: 'm'.repeat(129) })))).not.toHaveProperty('model');
    expect(countCodePoints('\ud83d')).toBe(1);
    expect(countCodePoints('e\u0301')).toBe(2);
  });
});

describe('IdentityVerifier cache', () => {
  const ISS = 'https://idp.test/cache';
  let k: TestKey;
  let issuer: IssuerConfig;
  beforeAll(async () => {
    k = await makeKey('ES256');
    issuer = {
      issuer: ISS,
      audiences: ['voicegate'],
      jwks: { keys: [k.jwk] },
      algorithms: ['ES256'],
      userClaim: 'sub',
      teamsClaim: 'teams',
      rolesClaim: 'roles',
      clockToleranceSec: 30,
    };
  });

  it('reuses a verified result until the token expires', async () => {
    const v = new IdentityVerifier([issuer]);
    const token = await sign(k, claims(ISS, 'alice', ['voice', 'voice', 'a-team'], { roles: ['ops', 'admin'] }));
    const first = await v.verify(token);
    expect(first).toMatchObject({ ok: true, cached: false, identity: { user: 'alice', teams: ['a-team', 'voice'], roles: ['admin', 'ops'] } });
    const second = await v.verify(token);
    expect(second).toMatchObject({ ok: true, cached: true });
    expect(second.ok && first.ok && second.identity).toEqual(first.ok && first.identity);
  });

  it('failures are never cached', async () => {
    const v = new IdentityVerifier([issuer]);
    const token = await sign(k, claims(ISS, 'alice', [], { aud: 'elsewhere' }));
    expect(await v.verify(token)).toMatchObject({ ok: false, code: 'invalid_audience' });
    expect(await v.verify(token)).toMatchObject({ ok: false, code: 'invalid_audience' });
  });

  it('a cached token past its expiry (plus skew) is rejected, judged by the `now` option', async () => {
    let clock = Date.now();
    const v = new IdentityVerifier([issuer], { now: () => clock });
    const exp = nowSec() + 60;
    const token = await sign(k, claims(ISS, 'alice', [], { exp }));
    expect(await v.verify(token)).toMatchObject({ ok: true, cached: false });
    expect(await v.verify(token)).toMatchObject({ ok: true, cached: true });
    // Past exp but inside the 30 s skew: re-verified (not served from cache) and still accepted.
    clock = exp * 1000 + 10_000;
    expect(await v.verify(token)).toMatchObject({ ok: true, cached: false });
    clock = exp * 1000 + 31_000;
    expect(await v.verify(token)).toMatchObject({ ok: false, code: 'token_expired' });
    // And it stays rejected: the expired entry is gone from the cache.
    expect(await v.verify(token)).toMatchObject({ ok: false, code: 'token_expired' });
  });

  it('refuses a token without an expiry', async () => {
    const v = new IdentityVerifier([issuer]);
    const { exp: _dropped, ...withoutExp } = claims(ISS, 'eve');
    const noExp = await sign(k, withoutExp);
    expect(await v.verify(noExp)).toMatchObject({ ok: false, code: 'invalid_claims' });
  });

  it('is bounded: the least recently used entry is evicted first', async () => {
    const v = new IdentityVerifier([issuer], { cacheSize: 2 });
    const [t1, t2, t3] = await Promise.all([1, 2, 3].map((i) => sign(k, claims(ISS, `user-${i}`, [], { jti: String(i) }))));
    for (const t of [t1!, t2!, t3!]) expect(await v.verify(t)).toMatchObject({ cached: false });
    expect(await v.verify(t3!)).toMatchObject({ cached: true });
    expect(await v.verify(t2!)).toMatchObject({ cached: true });
    expect(await v.verify(t1!)).toMatchObject({ ok: true, cached: false, identity: { user: 'user-1' } });
    // t1 went back in and pushed out t3, used less recently than t2.
    expect(await v.verify(t2!)).toMatchObject({ cached: true });
    expect(await v.verify(t3!)).toMatchObject({ cached: false });
  });
});

describe('voice catalogue (issue 9, point 15): entitled like the path model, passed through', () => {
  const bob = who('bob');
  const mallory = who('mallory', ['red-team']);

  it('get_voices of a model: allowed for its collaborators with that account\'s key, 403 for others', () => {
    const path = '/smallest/waves/v1/lightning-v3.1/get_voices';
    const d = allowed(decide(req('GET', path, undefined, { 'x-api-key': 'caller-key' }), snapshot, alice));
    expect(d.headersToSet).toEqual([{ key: 'authorization', value: `Bearer ${keys.tts}` }]);
    expect(d.headersToRemove).toContain('x-api-key');
    expect(d.metadata).toMatchObject({ endpoint: 'voices.list', model: 'lightning-v3.1', account: 'smallest-tts', upstream_path: '/waves/v1/lightning-v3.1/get_voices' });
    // bob may use pulse only: the voices of a TTS model are not his to list.
    denied(decide(req('GET', path), snapshot, bob), 403, 'not_entitled');
    denied(decide(req('GET', '/smallest/api/v1/lightning/get_voices'), snapshot, mallory), 403, 'not_entitled');
  });

  it('a model that is not configured, or not TTS, is refused like on the synthesis routes', () => {
    denied(decide(req('GET', '/smallest/waves/v1/lightning-v9/get_voices'), snapshot, alice), 404, 'unknown_model');
    denied(decide(req('GET', '/smallest/waves/v1/pulse/get_voices'), snapshot, bob), 400, 'model_type_mismatch');
    denied(decide(req('GET', '/smallest/waves/v1/lightning%2Dv3.1/get_voices'), snapshot, alice), 400, 'invalid_path');
  });

  it('cloned voices are managed under the path model (the SDK\'s lightning-large): its collaborators only', () => {
    const ops: Array<[string, string, string | undefined]> = [
      ['GET', '/smallest/api/v1/lightning-large/get_cloned_voices', undefined],
      ['POST', '/smallest/api/v1/lightning-large/add_voice', '--b\r\nContent-Disposition: form-data; name="displayName"\r\n\r\nMe\r\n--b--\r\n'],
      ['DELETE', '/smallest/waves/v1/lightning-large', '{"voiceId":"voice_1"}'],
    ];
    for (const [method, path, body] of ops) {
      const d = allowed(decide(req(method, path, body), snapshot, alice));
      expect(d.metadata).toMatchObject({ model: 'lightning-large', account: 'smallest-tts' });
      // Nothing on these routes is metered, so the body is never read (an audio upload on add_voice).
      expect(d.metadata.characters).toBeUndefined();
      denied(decide(req(method, path, body), snapshot, bob), 403, 'not_entitled');
    }
  });

  it('only the listed methods: GET on the delete path, DELETE on get_voices are unknown endpoints', () => {
    denied(decide(req('GET', '/smallest/waves/v1/lightning-large'), snapshot, alice), 404, 'unknown_endpoint');
    denied(decide(req('DELETE', '/smallest/waves/v1/lightning-v3.1/get_voices'), snapshot, alice), 404, 'unknown_endpoint');
    denied(decide(req('POST', '/smallest/waves/v1/lightning-v3.1/get_voices'), snapshot, alice), 404, 'unknown_endpoint');
  });

  it('a browser\'s ?token= is stripped; other query parameters reach the provider', () => {
    const d = allowed(decide({ method: 'GET', path: '/smallest/waves/v1/lightning-v3.1/get_voices?token=jwt&lang=en', headers: {} }, snapshot, alice));
    expect(d.metadata.upstream_path).toBe('/waves/v1/lightning-v3.1/get_voices?lang=en');
    expect(d.queryParametersToRemove).toEqual(['token']);
  });
});
