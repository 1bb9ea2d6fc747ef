/**
 * The publisher's payload from a real store (PGlite in memory): what an administrator entered
 * comes out on the pod side, the token opens only with the snapshot key and only for its account
 * and revision, and the payload never carries the token in clear.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPgliteControlStore } from '../../extproc/adapters/control-store/open-store.ts';
import { buildDataPlaneSnapshot } from '../../extproc/core/control/build-data-plane.ts';
import { compileDataPlane, decodeDataPlanePayload, parseLocalConfig } from '../../extproc/core/control/compile-data-plane.ts';
import { snapshotTokenBinding } from '../../extproc/core/control/data-plane.ts';
import { Keyring } from '../../extproc/core/control/envelope.ts';
import type { ControlStore } from '../../extproc/core/control/store.ts';

const ring = (id: string) => new Keyring([{ id, key: new Uint8Array(randomBytes(32)) }]);
const kek = ring('kek1');
const snapshotKey = ring('snap1');
const TOKEN = 'fixture-provider-token-0123456789';
const ctx = { actor: 'user:admin' };
const local = parseLocalConfig({
  version: 1,
  identity: { issuers: [{ issuer: 'https://idp.test', audiences: ['voicegate'], jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] } }] },
  providers: { smallest: { upstream: 'http://127.0.0.1:7070' } },
});

let store: ControlStore;
let close: () => Promise<void>;
let serviceKey: string;

beforeAll(async () => {
  const opened = await openPgliteControlStore({ keyring: kek });
  store = opened.store;
  close = () => opened.close();
  await store.createAccount({ name: 'acme-tts', token: TOKEN, concurrencyUnits: 3 }, ctx);
  await store.createAccount({ name: 'no-token-yet' }, ctx);
  await store.addCollaborator('acme-tts', { subject: 'team:voice', role: 'user' }, ctx);
  await store.addCollaborator('acme-tts', { subject: 'service:ci', role: 'manager' }, ctx);
  await store.createModel('acme-tts', { modelId: 'lightning-v3.1', type: 'tts', aliases: ['lightning'], price: { perThousandChars: '0.05' } }, ctx);
  await store.createModel('no-token-yet', { modelId: 'pulse', type: 'stt', price: { perMinute: '0.01' } }, ctx);
  await store.createTeam({ name: 'voice' }, ctx);
  await store.addTeamMember('voice', 'alice', ctx);
  await store.createServiceAccount({ name: 'ci' }, ctx);
  serviceKey = (await store.createServiceKey('ci', { expiresAt: '2027-01-01T00:00:00.000Z' }, ctx)).plaintext;
});
afterAll(async () => close?.());

describe('buildDataPlaneSnapshot', () => {
  it('carries accounts, collaborators, models, members and key hashes, at the store revision, valid for pods', async () => {
    const config = await store.loadConfiguration();
    const p = buildDataPlaneSnapshot({ config, kek, snapshotKey, now: new Date('2026-12-02T12:00:00Z') });
    const text = JSON.stringify(p);
    expect(decodeDataPlanePayload(text, { revision: config.revision })).toEqual(p);
    expect(p.revision).toBe(await store.currentRevision());
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(serviceKey);
    expect(p.accounts.map((a) => [a.name, a.concurrency_units, a.token === null])).toEqual([
      ['acme-tts', 3, false],
      ['no-token-yet', 1, true],
    ]);
    expect(p.collaborators).toEqual(expect.arrayContaining([
      { account: 'acme-tts', subject: 'team:voice', role: 'user' },
      { account: 'acme-tts', subject: 'service:ci', role: 'manager' },
    ]));
    expect(p.models).toEqual(expect.arrayContaining([
      { account: 'acme-tts', model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning'], price: { per_1k_chars: '0.05' } },
    ]));
    expect(p.team_members).toEqual([{ team: 'voice', member: 'alice' }]);
    expect(p.service_keys).toHaveLength(1);
    expect(p.service_keys[0]).toMatchObject({ subject: 'service:ci', not_after: '2027-01-01T00:00:00.000Z' });
  });

  it('seals the token for pods: it opens with the snapshot key for its account and revision, not with the KEK or elsewhere', async () => {
    const config = await store.loadConfiguration();
    const p = buildDataPlaneSnapshot({ config, kek, snapshotKey });
    const t = p.accounts[0]!.token!;
    const sealed = { algorithm: t.algorithm, kekId: t.kek_id, wrappedKey: new Uint8Array(Buffer.from(t.wrapped_key, 'base64')), ciphertext: new Uint8Array(Buffer.from(t.ciphertext, 'base64')) };
    expect(snapshotKey.open(sealed, snapshotTokenBinding('acme-tts', p.revision))).toBe(TOKEN);
    expect(() => snapshotKey.open(sealed, snapshotTokenBinding('acme-tts', p.revision + 1))).toThrow();
    expect(() => snapshotKey.open(sealed, snapshotTokenBinding('other', p.revision))).toThrow();
    expect(() => kek.open(sealed, snapshotTokenBinding('acme-tts', p.revision))).toThrow();
  });

  it('compiles on the pod side into a snapshot that routes the model to the account with its token', async () => {
    if (!local.ok) throw new Error(JSON.stringify(local.issues));
    const p = buildDataPlaneSnapshot({ config: await store.loadConfiguration(), kek, snapshotKey });
    const r = await compileDataPlane({ payload: p, local: local.doc, keyring: snapshotKey, resolveLocalSecret: async () => ({ ok: false, message: 'none' }), origin: 'test' });
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!r.ok) return;
    expect(r.withoutToken).toEqual(['no-token-yet']);
    expect(r.snapshot.version).toBe(p.revision);
    expect([...r.snapshot.serviceKeys!.values()].map((k) => k.subject)).toEqual(['service:ci']);
    expect(r.snapshot.teamMembers!.get('alice')).toEqual(['voice']);
  });

  it("carries a model's max_session_seconds to the compiled ModelAccount.maxSessionMs, and leaves it out when unset", async () => {
    if (!local.ok) throw new Error(JSON.stringify(local.issues));
    const compile = async () => {
      const p = buildDataPlaneSnapshot({ config: await store.loadConfiguration(), kek, snapshotKey });
      const r = await compileDataPlane({ payload: p, local: local.doc, keyring: snapshotKey, resolveLocalSecret: async () => ({ ok: false, message: 'none' }), origin: 'test' });
      if (!r.ok) throw new Error(JSON.stringify(r.issues));
      const model = r.snapshot.models.get('smallest')!.get('lightning-v3.1')!;
      return { payload: p.models.find((m) => m.model_id === 'lightning-v3.1')!, entry: model.accounts.find((a) => a.account === 'acme-tts')! };
    };
    const unset = await compile();
    expect(unset.payload).not.toHaveProperty('max_session_seconds');
    expect(unset.entry.maxSessionMs).toBeUndefined();

    const m = (await store.getModel('acme-tts', 'lightning-v3.1'))!;
    await store.updateModel('acme-tts', 'lightning-v3.1', { maxSessionSeconds: 900 }, m.version, ctx);
    const set = await compile();
    expect(set.payload.max_session_seconds).toBe(900);
    expect(set.entry.maxSessionMs).toBe(900_000);

    await store.updateModel('acme-tts', 'lightning-v3.1', { maxSessionSeconds: null }, m.version + 1, ctx);
    expect((await compile()).entry.maxSessionMs).toBeUndefined();
  });

  it('a payload from before max_session_seconds existed is still valid', async () => {
    const p = buildDataPlaneSnapshot({ config: await store.loadConfiguration(), kek, snapshotKey });
    const old = { ...p, models: p.models.map(({ max_session_seconds: _dropped, ...m }) => m) };
    expect(decodeDataPlanePayload(JSON.stringify(old)).models).toEqual(old.models);
  });
});
