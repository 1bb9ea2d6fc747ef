/**
 * The decision over Envoy's wire: an Envoy stand-in built from Envoy's real protos calls
 * `envoy.service.auth.v3.Authorization/Check` on a running extproc server, through every signing
 * algorithm, every rejection, every route shape, and a JWKS key rotation.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { exportSPKI } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../extproc/core/config/snapshot.ts';
import { startExtprocServer, type ExtprocServer } from '../../extproc/adapters/envoy/server.ts';
import {
  accountKeys,
  ALGS,
  b64url,
  claims,
  envoyClient,
  loadTestSnapshot,
  makeKey,
  metadataOf,
  nowSec,
  sign,
  startJwksServer,
  type ClientRequest,
  type DecodedCheckResponse,
  type EnvoyClient,
  type JwksServer,
  type TestAlg,
  type TestKey,
} from './fixtures.ts';

const silent = pino({ level: 'silent' });
const ISS_INLINE = 'https://idp.test/inline';
const ISS_REMOTE = 'https://idp.test/remote';
const keys = accountKeys();

let jwks: JwksServer;
const inlineKeys = new Map<TestAlg, TestKey>();
const remoteKeys = new Map<TestAlg, TestKey>();
let server: ExtprocServer;
let client: EnvoyClient;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  jwks = await startJwksServer();
  cleanups.push(() => jwks.close());
  for (const alg of ALGS) {
    inlineKeys.set(alg, await makeKey(alg));
    remoteKeys.set(alg, await makeKey(alg));
  }
  jwks.serve('/remote/jwks.json', [...remoteKeys.values()].map((k) => k.jwk));
  const snapshot = await loadTestSnapshot(
    [
      { issuer: ISS_INLINE, keys: [...inlineKeys.values()] },
      { issuer: ISS_REMOTE, name: 'remote', jwksUrl: `${jwks.url}/remote/jwks.json` },
    ],
    keys,
  );
  const source = new StaticSnapshotSource(snapshot);
  server = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: createAuthorizer(source), source, logger: silent });
  cleanups.push(() => server.close(0));
  client = envoyClient(server.port);
  cleanups.push(() => client.close());
});

afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const key = (alg: TestAlg = 'ES256'): TestKey => inlineKeys.get(alg)!;
const tokenFor = (user: string, teams: string[] = [], extra: Record<string, unknown> = {}, k: TestKey = key()) =>
  sign(k, claims(ISS_INLINE, user, teams, extra));
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const TTS_BODY = JSON.stringify({ text: 'hello', voice_id: 'magnus', sample_rate: 24000 });
const ttsSync = (token: string): ClientRequest => ({
  method: 'POST',
  path: '/smallest/waves/v1/lightning-v3.1/get_speech',
  headers: { ...bearer(token), 'content-type': 'application/json' },
  body: TTS_BODY,
});

const CREDENTIAL_HEADERS = ['x-api-key', 'cookie', 'proxy-authorization'];

/** Everything an allow must carry; returns the metadata for case-specific checks. */
function expectAllow(res: DecodedCheckResponse, req: ClientRequest, token: string, accountKey: string): Record<string, unknown> {
  expect(res.status.code).toBe(0);
  expect(res.http_response).toBe('ok_response');
  expect(res.denied_response).toBeUndefined();
  const ok = res.ok_response!;
  const auth = ok.headers.filter((h) => h.header.key.toLowerCase() === 'authorization');
  expect(auth).toHaveLength(1);
  expect(auth[0]!.header.value).toBe(`Bearer ${accountKey}`);
  expect(auth[0]!.append_action).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
  expect(ok.headers_to_remove.map((h) => h.toLowerCase())).not.toContain('authorization');
  expect(ok.headers_to_remove).toEqual(expect.arrayContaining(CREDENTIAL_HEADERS));
  const hadQueryToken = new URLSearchParams(req.path.split('?')[1] ?? '').has('token');
  expect(ok.query_parameters_to_remove).toEqual(hadQueryToken ? ['token'] : []);
  const meta = metadataOf(res);
  for (const field of ['user', 'teams', 'model', 'account', 'route_kind']) expect(meta, field).toHaveProperty(field);
  // The gateway token never travels on: not in metadata (upstream_path), not in any mutation.
  expect(JSON.stringify(res)).not.toContain(token);
  expect(JSON.stringify(res)).not.toContain(token.split('.')[2]);
  return meta;
}

/** Everything a denial must carry; returns the parsed error. */
function expectDeny(res: DecodedCheckResponse, status: string, code: string, token?: string): { code: string; message: string } {
  expect(res.status.code).not.toBe(0);
  expect(res.http_response).toBe('denied_response');
  expect(res.ok_response).toBeUndefined();
  const denied = res.denied_response!;
  expect(denied.status.code).toBe(status);
  const body = JSON.parse(denied.body) as { error: { code: string; message: string } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message']);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(10);
  const header = (name: string) => denied.headers.find((h) => h.header.key.toLowerCase() === name)?.header.value;
  expect(header('content-type')).toBe('application/json');
  if (status === 'Unauthorized') expect(header('www-authenticate')).toMatch(/^Bearer realm="voicegate"/);
  else expect(header('www-authenticate')).toBeUndefined();
  const everything = JSON.stringify(res);
  if (token) {
    expect(everything).not.toContain(token);
    for (const part of token.split('.').filter((p) => p.length > 8)) expect(everything).not.toContain(part);
  }
  // A denial never hands out a provider key either.
  expect(everything).not.toContain(keys.tts);
  expect(everything).not.toContain(keys.stt);
  return body.error;
}

describe('every signing algorithm, inline JWKS and jwks_url', () => {
  for (const alg of ALGS) {
    for (const [label, issuer, set] of [
      ['inline jwks', ISS_INLINE, inlineKeys],
      ['jwks_url', ISS_REMOTE, remoteKeys],
    ] as const) {
      it(`${alg} via ${label}: alice (team voice) may synthesise`, async () => {
        const token = await sign(set.get(alg)!, claims(issuer, 'alice', ['voice']));
        const req = ttsSync(token);
        const meta = expectAllow(await client.check(req), req, token, keys.tts);
        // The remote issuer is named `remote`: its users and teams are qualified with it.
        const q = issuer === ISS_REMOTE ? 'remote:' : '';
        expect(meta).toMatchObject({
          user: `${q}alice`,
          teams: `${q}voice`,
          provider: 'smallest',
          model: 'lightning-v3.1',
          model_type: 'tts',
          account: 'smallest-tts',
          route_kind: 'rest',
          endpoint: 'tts.sync',
          characters: 5,
          upstream_path: '/waves/v1/lightning-v3.1/get_speech',
        });
      });
    }
  }
});

describe('rejections: 401 with WWW-Authenticate, JSON body, no token echoed', () => {
  it('no token at all', async () => {
    const res = await client.check({ method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', body: TTS_BODY });
    expectDeny(res, 'Unauthorized', 'missing_token');
    const www = res.denied_response!.headers.find((h) => h.header.key === 'www-authenticate')!.header.value;
    expect(www).toBe('Bearer realm="voicegate"');
  });

  it('malformed tokens and Authorization schemes', async () => {
    for (const auth of ['Bearer not-a-jwt', 'Bearer a.b.c', 'Bearer ' + 'x'.repeat(20_000) + '.y.z', 'Basic YWxpY2U6cHc=', 'Bearer']) {
      const res = await client.check({ ...ttsSync('unused'), headers: { authorization: auth } });
      expectDeny(res, 'Unauthorized', 'malformed_token', auth.replace(/^\S+\s*/, '') || undefined);
    }
  });

  it('alg: none (unsigned token)', async () => {
    const header = b64url(JSON.stringify({ alg: 'none', typ: 'JWT', kid: key('RS256').kid }));
    const payload = b64url(JSON.stringify(claims(ISS_INLINE, 'alice', ['voice'])));
    for (const token of [`${header}.${payload}.`, `${header}.${payload}.${b64url('sig')}`]) {
      expectDeny(await client.check(ttsSync(token)), 'Unauthorized', 'unsupported_algorithm', token);
    }
  });

  it('HS256 signed with the RSA public key as HMAC secret (key confusion)', async () => {
    const rsa = key('RS256');
    const pem = await exportSPKI(rsa.publicKey);
    const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: rsa.kid }));
    const payload = b64url(JSON.stringify(claims(ISS_INLINE, 'alice', ['voice'])));
    for (const secret of [pem, Buffer.from(JSON.stringify(rsa.jwk))]) {
      const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
      const token = `${header}.${payload}.${sig}`;
      expectDeny(await client.check(ttsSync(token)), 'Unauthorized', 'unsupported_algorithm', token);
    }
  });

  const cases: Array<[string, () => Promise<string>, string]> = [
    ['wrong issuer', () => sign(key(), claims('https://evil.test', 'alice', ['voice'])), 'unknown_issuer'],
    ['no issuer', () => sign(key(), claims(ISS_INLINE, 'alice', ['voice'], { iss: undefined })), 'unknown_issuer'],
    ['wrong audience', () => tokenFor('alice', ['voice'], { aud: 'someone-else' }), 'invalid_audience'],
    ['expired beyond the clock skew', () => tokenFor('alice', ['voice'], { iat: nowSec() - 7200, exp: nowSec() - 120 }), 'token_expired'],
    ['nbf in the future beyond the skew', () => tokenFor('alice', ['voice'], { nbf: nowSec() + 120 }), 'token_not_yet_valid'],
    ['unknown kid', async () => sign(await makeKey('ES256', 'kid-nobody-publishes'), claims(ISS_INLINE, 'alice', ['voice'])), 'unknown_key'],
    [
      'known kid, signed by another key',
      async () => sign(await makeKey('ES256', key('ES256').kid), claims(ISS_INLINE, 'alice', ['voice'])),
      'invalid_signature',
    ],
    ['no user claim', () => tokenFor('alice', ['voice'], { sub: undefined }), 'invalid_claims'],
  ];
  for (const [name, make, code] of cases) {
    it(name, async () => {
      const token = await make();
      expectDeny(await client.check(ttsSync(token)), 'Unauthorized', code, token);
      // The same token in the query is judged the same way.
      const res = await client.check({ method: 'GET', path: `/smallest/waves/v1/tts/live?model=lightning_v3.1&token=${token}` });
      expectDeny(res, 'Unauthorized', code, token);
    });
  }

  it('within the clock skew: just expired and not-yet-valid tokens are accepted', async () => {
    for (const extra of [{ exp: nowSec() - 10 }, { nbf: nowSec() + 10 }]) {
      const token = await tokenFor('alice', ['voice'], extra);
      const req = ttsSync(token);
      expectAllow(await client.check(req), req, token, keys.tts);
    }
  });
});

describe('token location', () => {
  it('from the Authorization header: caller credentials removed, other headers untouched', async () => {
    const token = await tokenFor('alice', ['voice']);
    const req: ClientRequest = {
      ...ttsSync(token),
      headers: {
        ...bearer(token),
        'x-api-key': 'sk_caller_own',
        cookie: 'session=1',
        'x-source': 'python-sdk',
        'x-fern-sdk-name': 'smallestai',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    };
    const res = await client.check(req);
    expectAllow(res, req, token, keys.tts);
    expect(res.ok_response!.headers.map((h) => h.header.key)).toEqual(['authorization']);
    expect(res.ok_response!.headers_to_remove.sort()).toEqual([...CREDENTIAL_HEADERS].sort());
  });

  it('from ?token= on a browser WebSocket: removed from the query, other parameters kept', async () => {
    const token = await tokenFor('alice', ['voice']);
    const req: ClientRequest = {
      method: 'GET',
      path: `/smallest/waves/v1/lightning-v3.1/get_speech/stream?timeout=30&token=${token}&voice_id=magnus`,
      headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-version': '13' },
    };
    const meta = expectAllow(await client.check(req), req, token, keys.tts);
    expect(meta).toMatchObject({
      route_kind: 'websocket',
      endpoint: 'tts.ws',
      model: 'lightning-v3.1',
      upstream_path: '/waves/v1/lightning-v3.1/get_speech/stream?timeout=30&voice_id=magnus',
    });
    expect(meta).not.toHaveProperty('characters');
  });

  it('header wins over query; the query token is still stripped', async () => {
    const good = await tokenFor('alice', ['voice']);
    const req: ClientRequest = { method: 'GET', path: '/smallest/waves/v1/pulse/get_text?token=garbage&language=en', headers: bearer(good) };
    const meta = expectAllow(await client.check(req), req, good, keys.stt);
    expect(meta['upstream_path']).toBe('/waves/v1/pulse/get_text?language=en');
  });
});

describe('entitlements', () => {
  it('alice via team voice may use TTS and STT', async () => {
    const token = await tokenFor('alice', ['voice']);
    const stt: ClientRequest = { method: 'POST', path: '/smallest/waves/v1/pulse/get_text?language=en', headers: { ...bearer(token), 'content-type': 'audio/wav' } };
    expect(expectAllow(await client.check(stt), stt, token, keys.stt)).toMatchObject({ account: 'smallest-stt', model: 'pulse', teams: 'voice' });
  });

  it('alice without her team has no entitlement', async () => {
    const token = await tokenFor('alice', []);
    const err = expectDeny(await client.check(ttsSync(token)), 'Forbidden', 'not_entitled', token);
    expect(err.message).toContain('smallest-tts');
  });

  it('bob (user collaborator) may use pulse but not lightning', async () => {
    const token = await tokenFor('bob');
    const stt: ClientRequest = { method: 'POST', path: '/smallest/api/v1/pulse/get_text', headers: bearer(token) };
    expect(expectAllow(await client.check(stt), stt, token, keys.stt)).toMatchObject({ user: 'bob', teams: '', account: 'smallest-stt' });
    const res = await client.check(ttsSync(token));
    expectDeny(res, 'Forbidden', 'not_entitled', token);
    // Denials after identification still say who and what, for the access log.
    expect(metadataOf(res)).toMatchObject({ user: 'bob', model: 'lightning-v3.1', deny_code: 'not_entitled' });
  });

  it('mallory (valid token, no entitlement) gets 403 on every model', async () => {
    const token = await tokenFor('mallory', ['red-team']);
    expectDeny(await client.check(ttsSync(token)), 'Forbidden', 'not_entitled', token);
    expectDeny(await client.check({ method: 'GET', path: '/smallest/waves/v1/stt/live?model=pulse', headers: bearer(token) }), 'Forbidden', 'not_entitled', token);
  });

  it('a team claim that is a string, not an array, is refused (never split into teams)', async () => {
    for (const teams of ['design voice', 'voice', 'design,voice']) {
      const token = await tokenFor('carol', [], { teams });
      const err = expectDeny(await client.check(ttsSync(token)), 'Unauthorized', 'invalid_claims', token);
      expect(err.message).toContain('"teams" claim must be an array of strings');
    }
  });

  it('two issuers, one sub: the remote issuer\'s alice and bob are other people than the inline issuer\'s', async () => {
    // The remote issuer's bob is remote:bob (a collaborator under that name), not the inline bob.
    const remoteBob = await sign(remoteKeys.get('ES256')!, claims(ISS_REMOTE, 'bob'));
    const stt: ClientRequest = { method: 'POST', path: '/smallest/waves/v1/pulse/get_text', headers: bearer(remoteBob) };
    expect(expectAllow(await client.check(stt), stt, remoteBob, keys.stt)).toMatchObject({ user: 'remote:bob' });
    // The inline issuer cannot mint the remote namespace: a sub or team with `:` is refused.
    for (const token of [await tokenFor('remote:bob'), await tokenFor('mallory', ['remote:voice'])]) {
      expectDeny(await client.check({ ...stt, headers: bearer(token) }), 'Unauthorized', 'invalid_claims', token);
    }
  });
});

describe('models, providers and routes', () => {
  it('unknown model → 404 naming the configured ones', async () => {
    const token = await tokenFor('alice', ['voice']);
    const err = expectDeny(
      await client.check({ ...ttsSync(token), path: '/smallest/waves/v1/lightning-v9/get_speech' }),
      'NotFound',
      'unknown_model',
      token,
    );
    expect(err.message).toContain('lightning-v9');
    expect(err.message).toContain('lightning-v3.1');
  });

  it('unknown provider → 404', async () => {
    const token = await tokenFor('alice', ['voice']);
    for (const path of ['/elevenlabs/v1/text-to-speech/abc', '/waves/v1/lightning-v3.1/get_speech', '/']) {
      expectDeny(await client.check({ ...ttsSync(token), path }), 'NotFound', 'unknown_provider', token);
    }
  });

  it('retired model on the G1 path is allowed and rewritten to G2', async () => {
    const token = await tokenFor('alice', ['voice']);
    const req: ClientRequest = { ...ttsSync(token), path: '/smallest/api/v1/lightning/get_speech' };
    expect(expectAllow(await client.check(req), req, token, keys.tts)).toMatchObject({
      model: 'lightning',
      upstream_path: '/waves/v1/lightning/get_speech',
      endpoint: 'tts.sync',
    });
  });

  it('unified TTS reads the model from the body (alias) and counts characters in code points', async () => {
    const token = await tokenFor('alice', ['voice']);
    const req: ClientRequest = {
      method: 'POST',
      path: '/smallest/waves/v1/tts',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'lightning_v3.1', text: 'héllo 👋', voice_id: 'magnus' }),
    };
    expect(expectAllow(await client.check(req), req, token, keys.tts)).toMatchObject({
      model: 'lightning-v3.1',
      route_kind: 'rest',
      endpoint: 'tts.unified.sync',
      characters: 7,
      upstream_path: '/waves/v1/tts',
    });
    const sse: ClientRequest = { ...req, path: '/smallest/waves/v1/tts/live' };
    expect(expectAllow(await client.check(sse), sse, token, keys.tts)).toMatchObject({ route_kind: 'sse', characters: 7 });
  });

  it('unified STT reads the model from the query', async () => {
    const token = await tokenFor('bob');
    const rest: ClientRequest = { method: 'POST', path: '/smallest/waves/v1/stt/?model=pulse&language=en', headers: bearer(token) };
    expect(expectAllow(await client.check(rest), rest, token, keys.stt)).toMatchObject({
      model: 'pulse',
      route_kind: 'rest',
      upstream_path: '/waves/v1/stt/?model=pulse&language=en',
    });
    const ws: ClientRequest = { method: 'GET', path: `/smallest/waves/v1/stt/live?model=pulse&token=${token}&encoding=linear16` };
    expect(expectAllow(await client.check(ws), ws, token, keys.stt)).toMatchObject({
      model: 'pulse',
      route_kind: 'websocket',
      upstream_path: '/waves/v1/stt/live?model=pulse&encoding=linear16',
    });
  });

  it('the configured default model when the request names none', async () => {
    const alice = await tokenFor('alice', ['voice']);
    const tts: ClientRequest = { ...ttsSync(alice), path: '/smallest/waves/v1/tts' };
    expect(expectAllow(await client.check(tts), tts, alice, keys.tts)).toMatchObject({ model: 'lightning-v3.1', characters: 5 });
    const bob = await tokenFor('bob');
    const stt: ClientRequest = { method: 'POST', path: '/smallest/waves/v1/stt', headers: bearer(bob) };
    expect(expectAllow(await client.check(stt), stt, bob, keys.stt)).toMatchObject({ model: 'pulse' });
  });

  it('a unified TTS body cut at the buffering limit is refused, not decided on the default model', async () => {
    const token = await tokenFor('alice', ['voice']);
    const whole = JSON.stringify({ model: 'lightning-large', text: 'x'.repeat(70_000), voice_id: 'magnus' });
    const res = await client.check({
      method: 'POST',
      path: '/smallest/waves/v1/tts',
      // What Envoy sends with allow_partial_message: the first max_request_bytes and this header.
      headers: { ...bearer(token), 'content-type': 'application/json', 'x-envoy-auth-partial-body': 'true' },
      body: whole.slice(0, 65_536),
    });
    expectDeny(res, 'PayloadTooLarge', 'body_too_large', token);
  });

  it('a TTS model on an STT route is a 400, not a pass-through', async () => {
    const token = await tokenFor('alice', ['voice']);
    expectDeny(
      await client.check({ method: 'POST', path: '/smallest/waves/v1/stt?model=lightning-v3.1', headers: bearer(token) }),
      'BadRequest',
      'model_type_mismatch',
      token,
    );
  });
});

describe('JWKS key rotation over jwks_url', () => {
  it('unknown kid → refetch → accepted once the issuer publishes the new key', async () => {
    const path = `/rotate-${randomUUID()}/jwks.json`;
    const a = await makeKey('RS256');
    const b = await makeKey('ES256');
    const issuer = 'https://idp.test/rotating';
    jwks.serve(path, [a.jwk]);
    const source = new StaticSnapshotSource(await loadTestSnapshot([{ issuer, jwksUrl: `${jwks.url}${path}` }], keys));
    const authorizer = createAuthorizer(source, { jwksCooldownMs: 0 });
    const rotating = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer, source, logger: silent });
    const c = envoyClient(rotating.port);
    try {
      const tokenA = await sign(a, claims(issuer, 'alice', ['voice']));
      const reqA = ttsSync(tokenA);
      expectAllow(await c.check(reqA), reqA, tokenA, keys.tts);
      expect(jwks.fetches(path)).toBe(1);

      // Key B is not published yet: the verifier refetches (cooldown 0) and still does not find it.
      const tokenB = await sign(b, claims(issuer, 'alice', ['voice']));
      expectDeny(await c.check(ttsSync(tokenB)), 'Unauthorized', 'unknown_key', tokenB);
      expect(jwks.fetches(path)).toBe(2);

      jwks.serve(path, [a.jwk, b.jwk]);
      const reqB = ttsSync(tokenB);
      expectAllow(await c.check(reqB), reqB, tokenB, keys.tts);
      expect(jwks.fetches(path)).toBe(3);

      // Known keys never cost a fetch: A and (cached) B verify from memory.
      const tokenA2 = await sign(a, claims(issuer, 'alice', ['voice'], { jti: randomUUID() }));
      expectAllow(await c.check(ttsSync(tokenA2)), ttsSync(tokenA2), tokenA2, keys.tts);
      expectAllow(await c.check(reqB), reqB, tokenB, keys.tts);
      expect(jwks.fetches(path)).toBe(3);
    } finally {
      c.close();
      await rotating.close(0);
    }
  });

  it('a burst of unknown-kid tokens does not refetch within the cooldown, and refetches once after it', async () => {
    const path = `/burst-${randomUUID()}/jwks.json`;
    const a = await makeKey('EdDSA');
    const b = await makeKey('EdDSA');
    const issuer = 'https://idp.test/burst';
    jwks.serve(path, [a.jwk]);
    const source = new StaticSnapshotSource(await loadTestSnapshot([{ issuer, jwksUrl: `${jwks.url}${path}` }], keys));
    const cooldownMs = 10 * 60_000;
    const authorizer = createAuthorizer(source, { jwksCooldownMs: cooldownMs });
    const burst = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer, source, logger: silent });
    const c = envoyClient(burst.port);
    try {
      const tokenA = await sign(a, claims(issuer, 'alice', ['voice']));
      expectAllow(await c.check(ttsSync(tokenA)), ttsSync(tokenA), tokenA, keys.tts);
      expect(jwks.fetches(path)).toBe(1);

      jwks.serve(path, [a.jwk, b.jwk]);
      const unknown = await Promise.all(
        Array.from({ length: 25 }, (_, i) => sign(i % 2 ? b : { ...b, kid: `forged-${i}` }, claims(issuer, 'alice', ['voice'], { jti: String(i) }))),
      );
      const answers = await Promise.all(unknown.map((t) => c.check(ttsSync(t))));
      answers.forEach((res, i) => expectDeny(res, 'Unauthorized', 'unknown_key', unknown[i]));
      for (const t of unknown.slice(0, 5)) expectDeny(await c.check(ttsSync(t)), 'Unauthorized', 'unknown_key', t);
      expect(jwks.fetches(path)).toBe(1);

      // Once the cooldown has passed (jose reads Date.now), one concurrent burst costs one fetch.
      const realNow = Date.now;
      const spy = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + cooldownMs + 1_000);
      try {
        const signedByB = unknown.filter((_, i) => i % 2 === 1);
        const after = await Promise.all(signedByB.map((t) => authorizer.check({ ...ttsSync(t), headers: bearer(t), body: Buffer.from(TTS_BODY) })));
        expect(after.map((d) => d.kind)).toEqual(signedByB.map(() => 'allow'));
        expect(jwks.fetches(path)).toBe(2);
      } finally {
        spy.mockRestore();
      }
    } finally {
      c.close();
      await burst.close(0);
    }
  });
});

describe('JWKS endpoint unreachable', () => {
  it('fails closed with 503, does not fetch on every request, and recovers once the IdP answers', async () => {
    const path = `/late-${randomUUID()}/jwks.json`;
    const k = await makeKey('RS256');
    const issuer = 'https://idp.test/late';
    // Not served yet: the JWKS server answers 404, as an IdP still starting up might.
    const source = new StaticSnapshotSource(await loadTestSnapshot([{ issuer, jwksUrl: `${jwks.url}${path}` }], keys));
    const authorizer = createAuthorizer(source, { jwksCooldownMs: 60_000 });
    const late = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer, source, logger: silent });
    const c = envoyClient(late.port);
    try {
      const token = await sign(k, claims(issuer, 'alice', ['voice']));
      for (let i = 0; i < 20; i++) expectDeny(await c.check(ttsSync(token)), 'ServiceUnavailable', 'jwks_unavailable', token);
      // The warm-up fetch plus at most a retry or two (one per second), not one per request.
      expect(jwks.fetches(path)).toBeLessThanOrEqual(3);

      jwks.serve(path, [k.jwk]);
      let res = await c.check(ttsSync(token));
      for (let i = 0; i < 50 && res.status.code !== 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await c.check(ttsSync(token));
      }
      expectAllow(res, ttsSync(token), token, keys.tts);
      const afterRecovery = jwks.fetches(path);
      for (let i = 0; i < 5; i++) expectAllow(await c.check(ttsSync(token)), ttsSync(token), token, keys.tts);
      expect(jwks.fetches(path)).toBe(afterRecovery);
    } finally {
      c.close();
      await late.close(0);
    }
  });
});

describe('unreadable CheckRequests fail closed', () => {
  it('a CheckRequest without method and path is denied with 400, never allowed', async () => {
    for (const request of [{}, { attributes: { request: { http: { path: '/smallest/waves/v1/tts' } } } }]) {
      expectDeny(await client.checkRaw(request), 'BadRequest', 'bad_check_request');
    }
  });
});

describe('gRPC health', () => {
  it('SERVING with a snapshot; unknown service is NOT_FOUND', async () => {
    expect(await client.health('')).toEqual({ status: 'SERVING' });
    expect(await client.health('envoy.service.auth.v3.Authorization')).toEqual({ status: 'SERVING' });
    await expect(client.health('no.such.Service')).rejects.toMatchObject({ code: 5 });
  });

  it('NOT_SERVING and 503 without a snapshot; SERVING once one arrives; NOT_SERVING when draining', async () => {
    const source = new StaticSnapshotSource();
    const empty = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer: createAuthorizer(source), source, logger: silent });
    const c = envoyClient(empty.port);
    try {
      expect(await c.health('')).toEqual({ status: 'NOT_SERVING' });
      const token = await tokenFor('alice', ['voice']);
      const res = await c.check(ttsSync(token));
      expectDeny(res, 'ServiceUnavailable', 'authz_unavailable', token);
      expect(res.status.code).toBe(14);

      source.swap(await loadTestSnapshot([{ issuer: ISS_INLINE, keys: [...inlineKeys.values()] }], keys));
      expect(await c.health('')).toEqual({ status: 'SERVING' });
      const req = ttsSync(token);
      expectAllow(await c.check(req), req, token, keys.tts);

      empty.drain();
      expect(await c.health('')).toEqual({ status: 'NOT_SERVING' });
    } finally {
      c.close();
      await empty.close(0);
    }
  });
});
