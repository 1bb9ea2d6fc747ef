/**
 * Browser callers without a browser: the `cors:` section as an operator writes it, the verdict for
 * preflights, actual requests and WebSocket upgrades, and the decision's `origin_not_allowed`.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { corsVerdict, originAllowed } from './cors.ts';
import { decide } from './decide.ts';
import { corsConfig } from '../config/schema.ts';
import { compileCors } from '../config/compile.ts';
import type { CorsPolicy, Snapshot } from '../config/snapshot.ts';
import type { IdentityResult } from '../identity/identity.ts';
import type { CheckInput, Deny } from './types.ts';
import { accountKeys, loadTestSnapshot, makeKey } from '../../../test/authz/fixtures.ts';

const APP = 'https://app.example.com';
const policy = (over: Record<string, unknown> = {}): CorsPolicy => compileCors(corsConfig.parse({ allowed_origins: [APP], ...over }));

describe('the cors: section', () => {
  it('fills defaults that let a page send Authorization and JSON and read the provider ids', () => {
    expect(policy()).toEqual({
      allowedOrigins: new Set([APP]),
      allowedMethods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id', 'traceparent', 'tracestate'],
      exposedHeaders: ['x-request-id', 'x-session-id', 'x-external-request-id', 'x-external-session-id', 'retry-after'],
      maxAgeSeconds: 600,
    });
  });

  it.each([
    ['https://app.example.com/', 'https://app.example.com'],
    ['https://App.Example.com', 'https://app.example.com'],
    ['https://app.example.com:443', 'https://app.example.com'],
    ['http://localhost:5173/app', 'http://localhost:5173'],
  ])('refuses %s, an origin no browser sends, and names the one it would', (given, canonical) => {
    const r = corsConfig.safeParse({ allowed_origins: [given] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['allowed_origins', 0]);
    expect(r.error?.issues[0]?.message).toContain(`did you mean "${canonical}"`);
  });

  it.each(['null', 'app.example.com', 'ftp://files.example.com', 'file:///tmp', ''])('refuses %j', (given) => {
    expect(corsConfig.safeParse({ allowed_origins: [given] }).success).toBe(false);
  });

  it('takes "*" only alone, and unknown fields, lower-case methods or bad header names not at all', () => {
    expect(compileCors(corsConfig.parse({ allowed_origins: ['*'] })).allowedOrigins).toBe('*');
    expect(corsConfig.safeParse({ allowed_origins: ['*', APP] }).success).toBe(false);
    expect(corsConfig.safeParse({ allowed_origins: [APP], allowed_methods: ['post'] }).success).toBe(false);
    expect(corsConfig.safeParse({ allowed_origins: [APP], allowed_headers: ['x y'] }).success).toBe(false);
    expect(corsConfig.safeParse({ allowed_origins: [APP], allow_credentials: true }).success).toBe(false);
    expect(corsConfig.safeParse({ allowed_origins: [APP], max_age_seconds: -1 }).success).toBe(false);
  });

  it('lower-cases header names and drops repeats', () => {
    const p = policy({ allowed_headers: ['Authorization', 'authorization', 'X-Trace'], expose_headers: ['X-Request-Id'] });
    expect(p.allowedHeaders).toEqual(['authorization', 'x-trace']);
    expect(p.exposedHeaders).toEqual(['x-request-id']);
  });
});

describe('corsVerdict', () => {
  const p = policy();

  it('leaves requests without Origin alone (curl, SDKs, Node fetch)', () => {
    expect(corsVerdict('POST', {}, p)).toEqual({ kind: 'none' });
    expect(corsVerdict('POST', {}, undefined)).toEqual({ kind: 'none' });
    expect(corsVerdict('OPTIONS', { 'access-control-request-method': 'POST' }, p)).toEqual({ kind: 'none' });
  });

  it('answers an admitted preflight with the lists and a cache lifetime', () => {
    expect(corsVerdict('OPTIONS', { origin: APP, 'access-control-request-method': 'POST' }, p)).toEqual({
      kind: 'preflight',
      headers: {
        'access-control-allow-origin': APP,
        'access-control-allow-methods': 'GET, POST',
        'access-control-allow-headers': 'authorization, content-type, x-request-id, traceparent, tracestate',
        'access-control-max-age': '600',
        vary: 'origin',
      },
    });
  });

  it('adds the origin and the exposed headers to an admitted actual request, an OPTIONS without a request method included', () => {
    const expected = {
      kind: 'allowed',
      headers: {
        'access-control-allow-origin': APP,
        'access-control-expose-headers': 'x-request-id, x-session-id, x-external-request-id, x-external-session-id, retry-after',
        vary: 'origin',
      },
    };
    expect(corsVerdict('POST', { origin: APP }, p)).toEqual(expected);
    expect(corsVerdict('OPTIONS', { origin: APP }, p)).toEqual(expected);
  });

  it.each([
    ['another site', 'https://evil.example'],
    ['a sibling subdomain', 'https://api.example.com'],
    ['the same host over http', 'http://app.example.com'],
    ['another port', 'https://app.example.com:8443'],
    ['a suffix trick', 'https://app.example.com.evil.example'],
    ['an opaque origin (sandboxed iframe, file://)', 'null'],
    ['an empty value', ''],
    ['an upper-case spelling', 'https://APP.example.com'],
  ])('refuses %s, preflight or not', (_what, origin) => {
    expect(corsVerdict('POST', { origin }, p)).toEqual({ kind: 'refused', origin });
    expect(corsVerdict('OPTIONS', { origin, 'access-control-request-method': 'POST' }, p)).toEqual({ kind: 'refused', origin });
  });

  it('refuses a repeated Origin field, which is no single origin', () => {
    expect(corsVerdict('POST', { origin: [APP, APP] }, p).kind).toBe('refused');
    expect(corsVerdict('POST', { origin: `${APP},${APP}` }, p).kind).toBe('refused');
  });

  it('refuses every origin when no policy is configured (the secure default)', () => {
    expect(corsVerdict('POST', { origin: APP }, undefined)).toEqual({ kind: 'refused', origin: APP });
    expect(corsVerdict('GET', { origin: APP }, compileCors(corsConfig.parse({})))).toEqual({ kind: 'refused', origin: APP });
  });

  it('with "*" admits any web origin but still not an opaque or malformed one', () => {
    const any = policy({ allowed_origins: ['*'] });
    expect(originAllowed('https://anything.example:444', any)).toBe(true);
    expect(originAllowed('null', any)).toBe(false);
    expect(originAllowed('https://a.example, https://b.example', any)).toBe(false);
    expect(corsVerdict('POST', { origin: 'http://x.test' }, any)).toMatchObject({ kind: 'allowed', headers: { 'access-control-allow-origin': 'http://x.test' } });
  });
});

describe('decide() refuses a browser origin nobody allowed, before anything else', () => {
  let snapshot: Snapshot;
  beforeAll(async () => {
    const base = await loadTestSnapshot([{ issuer: 'https://idp.test/unit', keys: [await makeKey('EdDSA')] }], accountKeys());
    snapshot = { ...base, cors: policy() };
  });
  const alice: IdentityResult = { ok: true, cached: false, identity: { issuer: 'https://idp.test/unit', user: 'alice', teams: ['voice'], roles: [] } };
  const input = (headers: Record<string, string>, path = '/smallest/waves/v1/lightning-v3.1/get_speech?token=jwt'): CheckInput => ({
    method: 'POST',
    path,
    headers: { 'content-type': 'text/plain', ...headers },
    body: new TextEncoder().encode('{"text":"hi","voice_id":"magnus"}'),
  });

  it('the text/plain POST with ?token= from another site: 403 origin_not_allowed, no provider key', () => {
    const d = decide(input({ origin: 'https://evil.example' }), snapshot, alice) as Deny;
    expect({ kind: d.kind, status: d.status, code: d.code }).toEqual({ kind: 'deny', status: 403, code: 'origin_not_allowed' });
    expect(d.message).toContain('https://evil.example');
    expect(JSON.stringify(d)).not.toContain('sk_');
  });

  it('even when the token is missing or invalid (the origin is judged first)', () => {
    const d = decide(input({ origin: 'https://evil.example' }), snapshot, { ok: false, code: 'missing_token', message: '' });
    expect(d.kind === 'deny' && d.code).toBe('origin_not_allowed');
  });

  it('a WebSocket upgrade from another site too', () => {
    const ws: CheckInput = { method: 'GET', path: '/smallest/waves/v1/pulse/get_text?token=jwt', headers: { origin: 'https://evil.example', upgrade: 'websocket' } };
    const d = decide(ws, snapshot, alice);
    expect(d.kind === 'deny' && d.code).toBe('origin_not_allowed');
  });

  it('every origin when the snapshot has no cors section', () => {
    const { cors: _c, ...without } = snapshot;
    const d = decide(input({ origin: APP }), without, alice);
    expect(d.kind === 'deny' && d.code).toBe('origin_not_allowed');
  });

  it('allows the admitted origin and a request without Origin exactly as before', () => {
    expect(decide(input({ origin: APP }), snapshot, alice).kind).toBe('allow');
    expect(decide(input({}), snapshot, alice).kind).toBe('allow');
  });
});
