/**
 * The re-decision of open sessions: sessions admitted by the real decision are kept by an
 * unchanged snapshot and ended, with the right reason, by each change that takes their
 * entitlement away; time bounds come from the token's expiry (plus skew and grace) and the
 * maximum lifetime, whichever is first.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { decide } from './decide.ts';
import { recheckSession, sessionCloseReason, sessionDeadline, sessionToken, SESSION_ENDED_CLOSE_CODE, type AdmittedSession } from './recheck.ts';
import type { AccountConfig, ModelConfig, Snapshot } from '../config/snapshot.ts';
import type { DecisionMetadata } from './types.ts';
import { accountKeys, claims, loadTestSnapshot, makeKey, nowSec, sign, type TestKey } from '../../../test/authz/fixtures.ts';

const ISSUER = 'https://idp.test/recheck';
let snapshot: Snapshot;
let key: TestKey;

beforeAll(async () => {
  key = await makeKey('ES256');
  snapshot = await loadTestSnapshot([{ issuer: ISSUER, keys: [key], clockSkewSeconds: 30 }], accountKeys());
});

/** The metadata the real decision gives `user` for an upgrade on `path`. */
function admittedBy(path: string, user: string, teams: string[] = [], s: Snapshot = snapshot): DecisionMetadata {
  const d = decide({ method: 'GET', path, headers: { authorization: 'Bearer x', upgrade: 'websocket' } }, s, {
    ok: true,
    cached: false,
    identity: { issuer: ISSUER, user, teams, roles: [] },
  });
  if (d.kind !== 'allow') throw new Error(`not allowed: ${d.code}`);
  return d.metadata;
}

const STT = '/smallest/waves/v1/pulse/get_text?language=en';
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech/stream';
const session = (metadata: DecisionMetadata, extra: Partial<AdmittedSession> = {}): AdmittedSession => ({
  metadata,
  token: { issuer: ISSUER },
  openedAtMs: 1_000_000,
  ...extra,
});

function withAccount(s: Snapshot, name: string, change: (a: AccountConfig) => AccountConfig | undefined): Snapshot {
  const accounts = new Map(s.accounts);
  const next = change(s.accounts.get(name)!);
  if (next) accounts.set(name, next);
  else accounts.delete(name);
  return { ...s, version: s.version + 1, accounts };
}
function withModel(s: Snapshot, name: string, change: (m: ModelConfig) => ModelConfig | undefined): Snapshot {
  const byName = new Map(s.models.get('smallest'));
  const old = byName.get(name)!;
  const next = change(old);
  for (const [k, m] of byName) if (m === old) (next ? byName.set(k, next) : byName.delete(k));
  return { ...s, version: s.version + 1, models: new Map([['smallest', byName]]) };
}

describe('recheckSession', () => {
  it('keeps what the same snapshot allowed: bob on pulse, alice (team voice) on TTS', () => {
    expect(recheckSession(session(admittedBy(STT, 'bob')), snapshot)).toEqual({ kind: 'keep' });
    expect(recheckSession(session(admittedBy(TTS, 'alice', ['voice'])), snapshot)).toEqual({ kind: 'keep' });
  });

  it('ends bob when he is no longer a collaborator, and only him', () => {
    const next = withAccount(snapshot, 'smallest-stt', (a) => ({ ...a, users: new Set() }));
    expect(recheckSession(session(admittedBy(STT, 'bob')), next)).toEqual({
      kind: 'end',
      reason: 'entitlement_revoked',
      message: 'user "bob" may no longer use model "pulse"',
    });
    expect(recheckSession(session(admittedBy(STT, 'alice', ['voice'])), next)).toEqual({ kind: 'keep' });
  });

  it('ends a team member when the team is removed', () => {
    const next = withAccount(snapshot, 'smallest-tts', (a) => ({ ...a, teams: new Set() }));
    expect(recheckSession(session(admittedBy(TTS, 'alice', ['voice'])), next)).toMatchObject({ kind: 'end', reason: 'entitlement_revoked' });
  });

  it('ends sessions whose model, account, provider, issuer or origin is gone', () => {
    const bob = session(admittedBy(STT, 'bob'));
    const noModel = withModel(snapshot, 'pulse', () => undefined);
    expect(recheckSession(bob, noModel)).toMatchObject({ kind: 'end', reason: 'entitlement_revoked', message: expect.stringContaining('model "pulse" is no longer available') });
    expect(recheckSession(bob, withModel(snapshot, 'pulse', (m) => ({ ...m, type: 'tts' })))).toMatchObject({ reason: 'entitlement_revoked' });
    expect(recheckSession(bob, withAccount(snapshot, 'smallest-stt', () => undefined))).toMatchObject({ reason: 'entitlement_revoked' });
    expect(recheckSession(bob, { ...snapshot, providers: new Map() })).toMatchObject({ reason: 'entitlement_revoked' });
    expect(recheckSession(bob, { ...snapshot, issuers: [] })).toMatchObject({ reason: 'entitlement_revoked', message: expect.stringContaining('issuer') });
    const browser = session(admittedBy(STT, 'bob'), { origin: 'https://app.example.com' });
    const cors = { allowedOrigins: new Set(['https://app.example.com']), allowedMethods: ['GET'], allowedHeaders: [], exposedHeaders: [], maxAgeSeconds: 0 };
    expect(recheckSession(browser, { ...snapshot, cors })).toEqual({ kind: 'keep' });
    expect(recheckSession(browser, { ...snapshot, cors: { ...cors, allowedOrigins: new Set<string>() } })).toMatchObject({ reason: 'entitlement_revoked', message: expect.stringContaining('origin') });
  });

  it('ends a session whose model moved to another account, even one the caller may use', () => {
    const alice = session(admittedBy(STT, 'alice', ['voice']));
    // smallest-tts also lists team voice: alice would be admitted there, but on another key.
    const moved = withModel(snapshot, 'pulse', (m) => ({ ...m, accounts: [{ ...m.accounts[0]!, account: 'smallest-tts' }] }));
    expect(recheckSession(alice, moved)).toMatchObject({ kind: 'end', reason: 'account_changed' });
  });

  it('keeps a session when only the account key rotated, or the model gained an alias', () => {
    const bob = session(admittedBy(STT, 'bob'));
    expect(recheckSession(bob, withAccount(snapshot, 'smallest-stt', (a) => ({ ...a, token: 'sk_rotated' })))).toEqual({ kind: 'keep' });
    expect(recheckSession(bob, withModel(snapshot, 'pulse', (m) => ({ ...m, aliases: ['pulse_v1'] })))).toEqual({ kind: 'keep' });
  });

  it("ends a JWT session whose access came only through a store team once the user leaves it; a token's own team keeps it", () => {
    // With the control plane the authorizer adds the store's teams (identity/store-teams.ts): carol
    // is admitted on TTS only because the store makes her a member of team voice.
    const inStore = { ...snapshot, teamMembers: new Map([['carol', ['voice']]]) };
    const carol = session(admittedBy(TTS, 'carol', ['voice'], inStore), { token: { issuer: ISSUER, teams: [] } });
    expect(recheckSession(carol, { ...inStore, version: inStore.version + 1 })).toEqual({ kind: 'keep' });
    const removed = { ...inStore, version: inStore.version + 1, teamMembers: new Map<string, readonly string[]>() };
    expect(recheckSession(carol, removed)).toEqual({ kind: 'end', reason: 'entitlement_revoked', message: 'user "carol" may no longer use model "lightning-v3.1"' });
    // Voice both in her token's claim and in the store: leaving the store team leaves the claim.
    const both = session(admittedBy(TTS, 'carol', ['voice'], inStore), { token: { issuer: ISSUER, teams: ['voice'] } });
    expect(recheckSession(both, removed)).toEqual({ kind: 'keep' });
    // Teams read from the token count only when the allow carried them too: studio, which the
    // account now lets in, was not among the teams carol was admitted with.
    const widened = session(admittedBy(TTS, 'carol', ['voice'], inStore), { token: { issuer: ISSUER, teams: ['studio'] } });
    const studioToo = withAccount(removed, 'smallest-tts', (a) => ({ ...a, teams: new Set([...a.teams, 'studio']) }));
    expect(recheckSession(widened, studioToo)).toMatchObject({ kind: 'end', reason: 'entitlement_revoked' });
  });

  it('fails closed on an allow that names no provider or model', () => {
    expect(recheckSession(session({ user: 'bob' }), snapshot)).toMatchObject({ kind: 'end', reason: 'entitlement_revoked' });
    expect(recheckSession(session({ user: 'bob', provider: 'smallest' }), snapshot)).toMatchObject({ kind: 'end', reason: 'entitlement_revoked' });
  });
});

describe('sessionDeadline', () => {
  const bounds = { maxSessionMs: 3_600_000, tokenGraceMs: 0 };
  it('is the token expiry plus the issuer skew when that comes first', () => {
    const s = session({}, { token: { issuer: ISSUER, expiresAtMs: 1_060_000 } });
    expect(sessionDeadline(s, snapshot, bounds)).toMatchObject({ atMs: 1_060_000 + 30_000, reason: 'token_expired' });
    expect(sessionDeadline(s, snapshot, { ...bounds, tokenGraceMs: 5_000 })).toMatchObject({ atMs: 1_095_000, reason: 'token_expired' });
    // An issuer the snapshot does not know gets no skew.
    expect(sessionDeadline({ ...s, token: { expiresAtMs: 1_060_000 } }, snapshot, bounds)).toMatchObject({ atMs: 1_060_000 });
  });
  it('is the maximum lifetime when that comes first, and nothing when neither applies', () => {
    const s = session({}, { token: { issuer: ISSUER, expiresAtMs: 1_000_000 + 7_200_000 } });
    expect(sessionDeadline(s, snapshot, bounds)).toMatchObject({ atMs: 1_000_000 + 3_600_000, reason: 'max_session_duration' });
    expect(sessionDeadline(session({}), snapshot, { maxSessionMs: 0, tokenGraceMs: 0 })).toBeUndefined();
  });
  it('closes with 1008 and a short reason', () => {
    expect(SESSION_ENDED_CLOSE_CODE).toBe(1008);
    for (const r of ['entitlement_revoked', 'account_changed', 'token_expired', 'max_session_duration'] as const) {
      expect(Buffer.byteLength(sessionCloseReason(r))).toBeLessThanOrEqual(123);
    }
  });
});

describe('sessionToken', () => {
  it('reads iss and exp from the header or ?token=, and nothing from what is not a JWT', async () => {
    const exp = nowSec() + 60;
    const jwt = await sign(key, { ...claims(ISSUER, 'bob'), exp });
    expect(sessionToken({ authorization: `Bearer ${jwt}` }, '/x')).toEqual({ issuer: ISSUER, expiresAtMs: exp * 1000 });
    expect(sessionToken({}, `/x?token=${jwt}`)).toEqual({ issuer: ISSUER, expiresAtMs: exp * 1000 });
    expect(sessionToken({ authorization: 'Bearer good' }, '/x')).toEqual({});
    expect(sessionToken({}, '/x')).toEqual({});
  });

  it("with the snapshot's issuers, also the teams the token's claim carries, qualified like the verifier's", async () => {
    const jwt = await sign(key, { ...claims(ISSUER, 'bob', ['voice', 'studio']), exp: nowSec() + 60 });
    const issuers = snapshot.issuers;
    expect(sessionToken({ authorization: `Bearer ${jwt}` }, '/x', issuers).teams).toEqual(['voice', 'studio']);
    const named = issuers.map((i) => ({ ...i, name: 'corp' }));
    expect(sessionToken({ authorization: `Bearer ${jwt}` }, '/x', named).teams).toEqual(['corp:voice', 'corp:studio']);
    const { teams: _none, ...noTeams } = claims(ISSUER, 'bob');
    expect(sessionToken({ authorization: `Bearer ${await sign(key, noTeams)}` }, '/x', issuers).teams).toEqual([]);
    // An issuer the snapshot does not know: no teams read (the admitted ones stand).
    expect(sessionToken({ authorization: `Bearer ${jwt}` }, '/x', []).teams).toBeUndefined();
  });
});

describe('configured maximum session durations (models[] and limits.users/teams max_session_seconds)', () => {
  const bounds = { maxSessionMs: 3_600_000, tokenGraceMs: 0 };
  const withBounds = (model?: number, team?: number, user?: number): Snapshot => {
    const s = withModel(snapshot, 'pulse', (m) => ({ ...m, accounts: m.accounts.map((a) => ({ ...a, ...(model !== undefined ? { maxSessionMs: model } : {}) })) }));
    return {
      ...s,
      principalLimits: {
        users: new Map(user !== undefined ? [['bob', { maxSessionMs: user }]] : []),
        teams: new Map(team !== undefined ? [['voice', { maxSessionMs: team }]] : []),
      },
    };
  };
  const bob = (s: Snapshot) => session({ ...admittedBy(STT, 'bob', ['voice'], s) }, { token: {} });

  it('the smallest applicable bound wins, and names whose it is', () => {
    const s = withBounds(600_000, 120_000, 300_000);
    expect(sessionDeadline(bob(s), s, bounds)).toMatchObject({ atMs: 1_000_000 + 120_000, reason: 'max_session_duration', message: expect.stringContaining('team "voice"') });
    const m = withBounds(60_000, 120_000);
    expect(sessionDeadline(bob(m), m, bounds)).toMatchObject({ atMs: 1_000_000 + 60_000, message: expect.stringContaining('model "pulse"') });
    const u = withBounds(undefined, undefined, 30_000);
    expect(sessionDeadline(bob(u), u, bounds)).toMatchObject({ atMs: 1_000_000 + 30_000, message: expect.stringContaining('user "bob"') });
  });

  it('the edge ceiling (--max-session) caps a larger configured bound; no configured bound leaves the ceiling', () => {
    const s = withBounds(7_200_000);
    expect(sessionDeadline(bob(s), s, bounds)).toMatchObject({ atMs: 1_000_000 + 3_600_000, message: expect.stringContaining("gateway's") });
    const none = withBounds();
    expect(sessionDeadline(bob(none), none, bounds)).toMatchObject({ atMs: 1_000_000 + 3_600_000 });
    // A team the caller is not in does not apply.
    const other = { ...none, principalLimits: { users: new Map(), teams: new Map([['ops', { maxSessionMs: 1000 }]]) } };
    expect(sessionDeadline(bob(other), other, bounds)?.atMs).toBe(1_000_000 + 3_600_000);
  });
});
