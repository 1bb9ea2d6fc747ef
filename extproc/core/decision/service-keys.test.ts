/**
 * Gateway-issued service keys (`vg_…`) and team memberships from the control plane, through the
 * real authorizer and decision: a key is the user `service:<name>`; unknown, revoked and expired
 * keys are one 401 that never quotes the key; a rotation's old key works until its grace ends;
 * the store's teams are added to the token's; an open session ends at the next re-check once its
 * key has left the snapshot, and at its key's end of validity.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizer } from './authorizer.ts';
import { recheckSession, sessionDeadline, sessionToken, type AdmittedSession } from './recheck.ts';
import { StaticSnapshotSource, type AccountConfig, type ServiceKeyEntry, type Snapshot } from '../config/snapshot.ts';
import { hashServiceKey } from '../config/service-key.ts';
import { newServiceKey } from '../control/service-key.ts';
import type { Allow, CheckInput, Decision, Deny } from './types.ts';
import { accountKeys, claims, loadTestSnapshot, makeKey, sign, type TestKey } from '../../../test/authz/fixtures.ts';

const ISSUER = 'https://idp.test/service-keys';
// The real clock: the JWTs of the fixtures expire an hour from now.
const NOW = Date.now();
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const STT_WS = '/smallest/waves/v1/pulse/get_text?language=en';
const TTS_BODY = new TextEncoder().encode(JSON.stringify({ text: 'hi', voice_id: 'magnus' }));

let base: Snapshot;
let idpKey: TestKey;
const keys = accountKeys();

beforeAll(async () => {
  idpKey = await makeKey('ES256');
  base = await loadTestSnapshot([{ issuer: ISSUER, keys: [idpKey] }], keys);
});

/** `base` with `service:ivr` a collaborator of the TTS account and these keys and memberships. */
function snapshotWith(serviceKeys: Array<[string, ServiceKeyEntry]>, teamMembers: Array<[string, string[]]> = [], version = 2): Snapshot {
  const accounts = new Map(base.accounts);
  const tts = base.accounts.get('smallest-tts')!;
  accounts.set('smallest-tts', { ...tts, users: new Set([...tts.users, 'service:ivr']) } satisfies AccountConfig);
  return { ...base, version, accounts, serviceKeys: new Map(serviceKeys), teamMembers: new Map(teamMembers) };
}

function check(s: Snapshot, bearer: string, path = TTS, where: 'header' | 'query' = 'header'): Promise<Decision> {
  const authorizer = createAuthorizer(new StaticSnapshotSource(s), { now: () => NOW });
  const input: CheckInput =
    where === 'header'
      ? { method: 'POST', path, headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: TTS_BODY }
      : { method: 'GET', path: `${path}${path.includes('?') ? '&' : '?'}token=${bearer}`, headers: { upgrade: 'websocket' } };
  return authorizer.check(input);
}
function allowed(d: Decision): Allow {
  if (d.kind !== 'allow') throw new Error(`expected allow, got ${d.status} ${d.code}: ${d.message}`);
  return d;
}
function refused(d: Decision, key: string): Deny {
  if (d.kind !== 'deny') throw new Error('expected a denial');
  expect({ status: d.status, code: d.code }).toEqual({ status: 401, code: 'invalid_service_key' });
  expect(d.headers['www-authenticate']).toBe('Bearer realm="voicegate", error="invalid_token", error_description="invalid_service_key"');
  // Neither the key nor any part of its random body appears in the answer.
  expect(JSON.stringify(d)).not.toContain(key.slice(3, 15));
  return d;
}

describe('service keys', () => {
  it('a valid key is the user service:<name>: the account key is injected, the caller key replaced', async () => {
    const k = newServiceKey();
    const s = snapshotWith([[k.hash, { subject: 'service:ivr', notAfterMs: null }]]);
    const d = allowed(await check(s, k.plaintext));
    expect(d.metadata.user).toBe('service:ivr');
    expect(d.metadata.account).toBe('smallest-tts');
    expect(d.headersToSet).toEqual([{ key: 'authorization', value: `Bearer ${keys.tts}` }]);
    expect(JSON.stringify(d)).not.toContain(k.plaintext);
  });

  it('is accepted as ?token= too, and the parameter is stripped', async () => {
    const k = newServiceKey();
    const s = snapshotWith([[k.hash, { subject: 'service:ivr', notAfterMs: null }]], [['service:ivr', ['voice']]]);
    const d = allowed(await check(s, k.plaintext, STT_WS, 'query'));
    expect(d.metadata.user).toBe('service:ivr');
    expect(d.queryParametersToRemove).toEqual(['token']);
    expect(d.metadata.upstream_path).not.toContain(k.plaintext);
  });

  it('an unknown, malformed, expired or absent-table key is 401 invalid_service_key', async () => {
    const known = newServiceKey();
    const unknown = newServiceKey();
    const s = snapshotWith([[known.hash, { subject: 'service:ivr', notAfterMs: NOW - 1 }]]);
    refused(await check(s, unknown.plaintext), unknown.plaintext);
    refused(await check(s, known.plaintext), known.plaintext);
    refused(await check(s, `${known.plaintext.slice(0, 20)}`), known.plaintext);
    refused(await check({ ...s, serviceKeys: undefined }, known.plaintext), known.plaintext);
    // Valid through its last instant, inclusive.
    const edge = snapshotWith([[known.hash, { subject: 'service:ivr', notAfterMs: NOW }]]);
    expect(allowed(await check(edge, known.plaintext)).metadata.user).toBe('service:ivr');
  });

  it('during a rotation grace old and new keys both work; after it only the new one', async () => {
    const old = newServiceKey();
    const fresh = newServiceKey();
    const during = snapshotWith([
      [old.hash, { subject: 'service:ivr', notAfterMs: NOW + 60_000 }],
      [fresh.hash, { subject: 'service:ivr', notAfterMs: null }],
    ]);
    const a = allowed(await check(during, old.plaintext));
    expect(a.metadata.user).toBe('service:ivr');
    expect(allowed(await check(during, fresh.plaintext)).metadata.user).toBe('service:ivr');
    const after = snapshotWith([[fresh.hash, { subject: 'service:ivr', notAfterMs: null }]], [], 3);
    refused(await check(after, old.plaintext), old.plaintext);
    expect(allowed(await check(after, fresh.plaintext)).metadata.user).toBe('service:ivr');
  });

  it('a key whose service is no collaborator is 403 not_entitled under its own name', async () => {
    const k = newServiceKey();
    const s = snapshotWith([[k.hash, { subject: 'service:batch', notAfterMs: null }]]);
    const d = await check(s, k.plaintext);
    expect(d.kind === 'deny' && [d.status, d.code, d.metadata.user]).toEqual([403, 'not_entitled', 'service:batch']);
  });
});

describe('teams from the store', () => {
  it('are combined with the token teams (sorted, de-duplicated) and entitle the caller', async () => {
    // carol has no team in her token; the store puts her in voice, a collaborator of both accounts.
    const carol = await sign(idpKey, claims(ISSUER, 'carol', ['zeta', 'ops']));
    const none = snapshotWith([]);
    const d0 = await check(none, carol);
    expect(d0.kind === 'deny' && d0.code).toBe('not_entitled');
    const s = snapshotWith([], [['carol', ['voice', 'ops', 'alpha']]]);
    const d = allowed(await check(s, carol));
    expect(d.metadata.teams).toBe('alpha,ops,voice,zeta');
    expect(d.metadata.account).toBe('smallest-tts');
  });

  it('apply to service keys, which carry no teams of their own', async () => {
    const k = newServiceKey();
    // service:batch is no collaborator itself; its team voice is.
    const s = snapshotWith([[k.hash, { subject: 'service:batch', notAfterMs: null }]], [['service:batch', ['voice']]]);
    const d = allowed(await check(s, k.plaintext, STT_WS, 'query'));
    expect([d.metadata.user, d.metadata.teams, d.metadata.account]).toEqual(['service:batch', 'voice', 'smallest-stt']);
  });
});

describe('sessions opened with a service key', () => {
  async function admitted(s: Snapshot, key: string, subject = 'service:ivr'): Promise<AdmittedSession> {
    const d = allowed(await check(s, key, STT_WS, 'query'));
    expect(d.metadata.user).toBe(subject);
    const token = sessionToken({}, `${STT_WS}&token=${key}`);
    expect(token).toEqual({ serviceKey: hashServiceKey(key) });
    expect(JSON.stringify(token)).not.toContain(key);
    return { metadata: d.metadata, token, openedAtMs: NOW };
  }

  it('end at the next re-check once the key has left the snapshot', async () => {
    const k = newServiceKey();
    const other = newServiceKey();
    const s = snapshotWith([[k.hash, { subject: 'service:batch', notAfterMs: null }]], [['service:batch', ['voice']]]);
    const session = await admitted(s, k.plaintext, 'service:batch');
    expect(recheckSession(session, { ...s, version: 3 })).toEqual({ kind: 'keep' });
    const revoked = snapshotWith([[other.hash, { subject: 'service:batch', notAfterMs: null }]], [['service:batch', ['voice']]], 4);
    const v = recheckSession(session, revoked);
    expect(v.kind === 'end' && v.reason).toBe('token_expired');
    expect(JSON.stringify(v)).not.toContain(k.plaintext);
  });

  it('lose a team the store takes away, since the key carries none', async () => {
    const k = newServiceKey();
    const entry: [string, ServiceKeyEntry] = [k.hash, { subject: 'service:batch', notAfterMs: null }];
    const session = await admitted(snapshotWith([entry], [['service:batch', ['voice']]]), k.plaintext, 'service:batch');
    const v = recheckSession(session, snapshotWith([entry], [], 3));
    expect(v.kind === 'end' && v.reason).toBe('entitlement_revoked');
  });

  it('are bounded by the key validity as the current snapshot states it (a rotation shortens it)', async () => {
    const k = newServiceKey();
    const bounds = { maxSessionMs: 0, tokenGraceMs: 0 };
    const s = snapshotWith([[k.hash, { subject: 'service:batch', notAfterMs: null }]], [['service:batch', ['voice']]]);
    const session = await admitted(s, k.plaintext, 'service:batch');
    expect(sessionDeadline(session, s, bounds)).toBeUndefined();
    const rotated = snapshotWith([[k.hash, { subject: 'service:batch', notAfterMs: NOW + 5_000 }]], [['service:batch', ['voice']]], 3);
    const d = sessionDeadline(session, rotated, { ...bounds, tokenGraceMs: 1_000 });
    expect(d && { atMs: d.atMs, reason: d.reason }).toEqual({ atMs: NOW + 6_000, reason: 'token_expired' });
  });
});
