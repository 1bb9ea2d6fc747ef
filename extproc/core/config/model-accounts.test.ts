/** Several accounts per model (issue 12, point 3): compilation, clear errors, and the decision over them. */
import { describe, expect, it } from 'vitest';
import { compileConfig } from './compile.ts';
import { configDocument } from './schema.ts';
import { decide } from '../decision/decide.ts';
import type { IdentityResult } from '../identity/identity.ts';

type Model = Record<string, unknown>;

function doc(models: Model[]) {
  return {
    version: 1,
    identity: { issuers: [{ issuer: 'https://idp.test', audiences: ['vg'], jwks: { keys: [{ kty: 'EC' }] } }] },
    providers: { smallest: {} },
    accounts: [
      { name: 'tts-a', token: 'env:A', collaborators: { teams: ['voice'] } },
      { name: 'tts-b', token: 'env:B', collaborators: { teams: ['voice', 'studio'] } },
      { name: 'tts-c', token: 'env:C', collaborators: { users: ['carol'] } },
    ],
    models,
  };
}

const ctx = { resolveSecret: async (ref: string) => ({ ok: true as const, value: `sk_${ref.slice(4)}` }), origin: 'test', version: 1 };

async function compile(models: Model[]) {
  return compileConfig(configDocument.parse(doc(models)), ctx);
}

const who = (user: string, teams: string[] = []): IdentityResult => ({ ok: true, cached: false, identity: { issuer: 'https://idp.test', user, teams, roles: [] } });

describe('models listed once per account', () => {
  it('compiles one model with every account in configuration order, its own price each, aliases merged', async () => {
    const r = await compile([
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-a', aliases: ['lightning_v3.1'], price: { per_1k_chars: '0.02' } },
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-b', aliases: ['lightning_v3.1', 'lv31'], price: { per_1k_chars: '0.03' }, max_session_seconds: 60 },
    ]);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    const byName = r.snapshot.models.get('smallest')!;
    const m = byName.get('lightning-v3.1')!;
    expect(m.accounts).toEqual([
      { account: 'tts-a', price: expect.objectContaining({ perThousandChars: '0.02' }) },
      { account: 'tts-b', price: expect.objectContaining({ perThousandChars: '0.03' }), maxSessionMs: 60_000 },
    ]);
    expect(m.aliases).toEqual(['lightning_v3.1', 'lv31']);
    expect(byName.get('lv31')).toBe(m);
    expect(byName.get('lightning_v3.1')).toBe(m);
  });

  it('reports a duplicate (name, account), a type mismatch and alias clashes, all at once', async () => {
    const r = await compile([
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-a' },
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-a' },
      { name: 'lightning-v3.1', type: 'stt', account: 'tts-b' },
      { name: 'pulse', type: 'stt', account: 'tts-c', aliases: ['lightning-v3.1'] },
      { name: 'lightning-v2', type: 'tts', account: 'tts-a', aliases: ['shared'] },
      { name: 'lightning-large', type: 'tts', account: 'tts-b', aliases: ['shared'] },
    ]);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues).toEqual([
      { path: 'models[1].account', message: 'model "lightning-v3.1" is already listed for account "tts-a" at models[0]' },
      { path: 'models[2].type', message: 'model "lightning-v3.1" is tts at models[0]; every entry of one model has the same type' },
      { path: 'models[3]', message: 'model name or alias "lightning-v3.1" is already used by "lightning-v3.1"' },
      { path: 'models[5]', message: 'model name or alias "shared" is already used by "lightning-v2"' },
    ]);
  });

  it('the same name on two providers is two models, not a clash', async () => {
    const d = doc([
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-a' },
      { name: 'lightning-v3.1', provider: 'other', type: 'tts', account: 'tts-o' },
    ]);
    const withOther = { ...d, providers: { smallest: {}, other: {} }, accounts: [...d.accounts, { name: 'tts-o', provider: 'other', token: 'env:O' }] };
    const r = await compileConfig(configDocument.parse(withOther), ctx);
    expect(r.ok).toBe(true);
  });
});

describe('the decision over several accounts', () => {
  const path = '/smallest/waves/v1/lightning-v3.1/get_speech';
  const input = { method: 'POST', path, headers: { 'content-type': 'application/json' }, body: new TextEncoder().encode('{"text":"hi"}') };

  async function snapshot() {
    const r = await compile([
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-a' },
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-b' },
      { name: 'lightning-v3.1', type: 'tts', account: 'tts-c' },
    ]);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    return r.snapshot;
  }

  it('allows when any account lets the caller in, naming every usable account in order', async () => {
    const s = await snapshot();
    const voice = decide(input, s, who('alice', ['voice']));
    expect(voice).toMatchObject({ kind: 'allow', headersToSet: [{ key: 'authorization', value: 'Bearer sk_A' }], metadata: { account: 'tts-a', accounts: 'tts-a,tts-b' } });
    const studio = decide(input, s, who('sam', ['studio']));
    // One usable account: no candidate list, the one account's key.
    expect(studio).toMatchObject({ kind: 'allow', headersToSet: [{ key: 'authorization', value: 'Bearer sk_B' }], metadata: { account: 'tts-b' } });
    expect(studio.metadata.accounts).toBeUndefined();
    expect(decide(input, s, who('carol'))).toMatchObject({ kind: 'allow', metadata: { account: 'tts-c' } });
  });

  it('denies when no account lets the caller in, naming the accounts to ask for', async () => {
    const d = decide(input, await snapshot(), who('mallory'));
    expect(d).toMatchObject({ kind: 'deny', code: 'not_entitled' });
    expect(d.kind === 'deny' && d.message).toContain('one of the accounts "tts-a", "tts-b", "tts-c"');
  });
});
