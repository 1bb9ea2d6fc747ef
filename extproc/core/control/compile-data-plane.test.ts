import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileDataPlane, DataPlanePayloadError, decodeDataPlanePayload, documentFromDataPlane, parseLocalConfig, payloadSha256, type LocalConfigDocument } from './compile-data-plane.ts';
import { snapshotTokenBinding, type DataPlaneSnapshot } from './data-plane.ts';
import { Keyring } from './envelope.ts';

const ring = (id = 'snap1') => new Keyring([{ id, key: new Uint8Array(randomBytes(32)) }]);
const TTS_TOKEN = 'sk_tts_0123456789abcdef0123';
const STT_TOKEN = 'sk_stt_fedcba9876543210fedc';

const localInput = {
  version: 1,
  identity: { issuers: [{ issuer: 'https://idp.test', audiences: ['voicegate'], jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] } }] },
  providers: { smallest: { upstream: 'http://127.0.0.1:7070', default_models: { tts: 'lightning-v3.1', stt: 'pulse' } } },
  limits: { teams: { voice: { max_units: 2 } } },
};

function local(): LocalConfigDocument {
  const r = parseLocalConfig(structuredClone(localInput));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.doc;
}

function sealed(keys: Keyring, token: string, account: string, revision: number) {
  const s = keys.seal(token, snapshotTokenBinding(account, revision));
  return { algorithm: s.algorithm, kek_id: s.kekId, wrapped_key: Buffer.from(s.wrappedKey).toString('base64'), ciphertext: Buffer.from(s.ciphertext).toString('base64') };
}

function payload(keys: Keyring, revision = 7): DataPlaneSnapshot {
  return {
    format: 1,
    revision,
    published_at: '2026-12-02T12:00:00.000Z',
    accounts: [
      { name: 'acme-tts', provider: 'smallest', base_url: null, concurrency_units: 3, ws_per_unit: 5, token: sealed(keys, TTS_TOKEN, 'acme-tts', revision) },
      { name: 'acme-stt', provider: 'smallest', base_url: null, concurrency_units: 2, ws_per_unit: 3, token: sealed(keys, STT_TOKEN, 'acme-stt', revision) },
      { name: 'pending', provider: 'smallest', base_url: null, concurrency_units: 1, ws_per_unit: 5, token: null },
    ],
    collaborators: [
      { account: 'acme-tts', subject: 'team:voice', role: 'user' },
      { account: 'acme-tts', subject: 'service:ci', role: 'user' },
      { account: 'acme-stt', subject: 'user:bob', role: 'manager' },
    ],
    models: [
      { account: 'acme-tts', model_id: 'lightning-v3.1', type: 'tts', aliases: ['lightning_v3.1'], price: { per_1k_chars: '0.02' } },
      { account: 'acme-stt', model_id: 'pulse', type: 'stt', aliases: [], price: { per_minute: '0.004' } },
      { account: 'pending', model_id: 'lightning-large', type: 'tts', aliases: [], price: {} },
    ],
    team_members: [
      { team: 'voice', member: 'alice' },
      { team: 'ops', member: 'alice' },
      { team: 'voice', member: 'service:ci' },
    ],
    service_keys: [{ sha256: 'a'.repeat(64), subject: 'service:ci', not_after: '2030-01-01T00:00:00.000Z' }],
  };
}

const noLocalSecrets = async () => ({ ok: false as const, message: 'no local secrets in this test' });

describe('compileDataPlane', () => {
  it('compiles accounts, collaborators, models, team members and service keys with the file', async () => {
    const keys = ring();
    const r = await compileDataPlane({ payload: payload(keys), local: local(), keyring: keys, resolveLocalSecret: noLocalSecrets, origin: 'test' });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    const s = r.snapshot;
    expect(s.version).toBe(7);
    expect(s.accounts.get('acme-tts')).toMatchObject({ token: TTS_TOKEN, concurrency: 3, wsPerUnit: 5, provider: 'smallest' });
    expect([...s.accounts.get('acme-tts')!.teams]).toEqual(['voice']);
    expect([...s.accounts.get('acme-tts')!.users]).toEqual(['service:ci']);
    expect([...s.accounts.get('acme-stt')!.users]).toEqual(['bob']);
    expect(s.accounts.get('acme-stt')!.token).toBe(STT_TOKEN);
    expect(s.models.get('smallest')?.get('lightning_v3.1')).toMatchObject({ name: 'lightning-v3.1', accounts: [{ price: { perThousandChars: '0.02' } }] });
    expect(s.models.get('smallest')?.get('pulse')?.accounts[0]?.price.perMinute).toBe('0.004');
    expect(s.teamMembers?.get('alice')).toEqual(['voice', 'ops']);
    expect(s.teamMembers?.get('service:ci')).toEqual(['voice']);
    expect(s.serviceKeys?.get('a'.repeat(64))).toEqual({ subject: 'service:ci', notAfterMs: Date.parse('2030-01-01T00:00:00.000Z') });
    // From the file: issuers, providers and limits.
    expect(s.issuers[0]?.issuer).toBe('https://idp.test');
    expect(s.providers.get('smallest')?.upstream).toBe('http://127.0.0.1:7070');
    expect(s.principalLimits?.teams.get('voice')).toEqual({ maxUnits: 2 });
    expect(s.defaultModels.get('smallest')).toEqual({ tts: 'lightning-v3.1', stt: 'pulse' });
    // An account without a token is left out with its models, not served with an empty key.
    expect(r.withoutToken).toEqual(['pending']);
    expect(s.accounts.has('pending')).toBe(false);
    expect(s.models.get('smallest')?.has('lightning-large')).toBe(false);
  });

  it('refuses the snapshot when a token was sealed with another key, naming the account', async () => {
    const r = await compileDataPlane({ payload: payload(ring('other')), local: local(), keyring: ring('snap1'), resolveLocalSecret: noLocalSecrets, origin: 'test' });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path)).toEqual(['accounts[0].token', 'accounts[1].token']);
    expect(r.issues[0]!.message).toContain('"acme-tts"');
    expect(r.issues[0]!.message).toContain('VOICEGATE_SNAPSHOT_KEY');
  });

  it('refuses a tampered ciphertext, a token moved to another account and one replayed into another revision', async () => {
    const keys = ring();
    const tampered = payload(keys);
    const ct = Buffer.from(tampered.accounts[0]!.token!.ciphertext, 'base64');
    ct[ct.length - 1]! ^= 1;
    tampered.accounts[0]!.token!.ciphertext = ct.toString('base64');
    const moved = payload(keys);
    moved.accounts[1]!.token = moved.accounts[0]!.token;
    const replayed = { ...payload(keys, 7), revision: 8 };
    for (const p of [tampered, moved, replayed]) {
      const r = await compileDataPlane({ payload: p, local: local(), keyring: keys, resolveLocalSecret: noLocalSecrets, origin: 'test' });
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.issues.some((i) => i.path.endsWith('.token') && i.message.includes('does not open'))).toBe(true);
      for (const i of r.issues) expect(i.message).not.toContain(TTS_TOKEN);
    }
  });

  it('accepts service: collaborators beside named issuers (they are no issuer-qualified names)', async () => {
    const keys = ring();
    const named = parseLocalConfig({ ...structuredClone(localInput), identity: { issuers: [{ ...localInput.identity.issuers[0]!, name: 'corp' }] } });
    if (!named.ok) throw new Error(JSON.stringify(named.issues));
    const p = payload(keys);
    p.collaborators.push({ account: 'acme-tts', subject: 'user:corp:alice', role: 'user' });
    const r = await compileDataPlane({ payload: p, local: named.doc, keyring: keys, resolveLocalSecret: noLocalSecrets, origin: 'test' });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect([...r.snapshot.accounts.get('acme-tts')!.users].sort()).toEqual(['corp:alice', 'service:ci']);
  });

  it('drops file defaults that name no model of the revision instead of refusing it', () => {
    const p = payload(ring());
    p.models = p.models.filter((m) => m.model_id !== 'pulse');
    const composed = documentFromDataPlane(p, local());
    expect(composed.droppedDefaults).toEqual(['providers.smallest.default_models.stt']);
    expect(composed.doc.providers['smallest']?.default_models).toEqual({ tts: 'lightning-v3.1' });
  });
});

describe('parseLocalConfig', () => {
  it('refuses accounts and models in a control-plane pod file, with a message saying why', () => {
    const r = parseLocalConfig({ ...localInput, accounts: [], models: [] });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path)).toEqual(['accounts', 'models']);
    expect(r.issues[0]!.message).toMatch(/comes from the control plane/);
  });

  it('validates the remaining sections as the file schema does', () => {
    const r = parseLocalConfig({ ...localInput, identity: { issuers: [] } });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues[0]!.path).toBe('identity.issuers');
  });
});

describe('decodeDataPlanePayload', () => {
  it('checks the sha256 and revision the carrier announced', () => {
    const text = JSON.stringify(payload(ring()));
    expect(decodeDataPlanePayload(text, { sha256: payloadSha256(text), revision: 7 }).revision).toBe(7);
    expect(() => decodeDataPlanePayload(text.replace('acme-stt', 'acme-xtt'), { sha256: payloadSha256(text) })).toThrow(DataPlanePayloadError);
    expect(() => decodeDataPlanePayload(text, { revision: 8 })).toThrow(/revision 7, announced as 8/);
    expect(() => decodeDataPlanePayload('{"format":1}')).toThrow(/not a data-plane snapshot/);
    expect(() => decodeDataPlanePayload('nope')).toThrow(/not JSON/);
  });
});
