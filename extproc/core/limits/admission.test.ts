import { describe, expect, it } from 'vitest';
import type { AccountConfig, Snapshot } from '../config/snapshot.ts';
import type { Allow } from '../decision/types.ts';
import { admitDecision, bindAccount, candidatesOf, limitDenial } from './admission.ts';
import { createAdmissionLedger } from './ledger.ts';

function account(name: string, concurrency: number): AccountConfig {
  return { name, provider: 'smallest', token: `sk_${name}`, users: new Set(), teams: new Set(), concurrency, wsPerUnit: 5 };
}

function snapshot(accounts: AccountConfig[], users: Record<string, { maxUnits: number }> = {}): Snapshot {
  return {
    version: 1,
    origin: 'test',
    issuers: [],
    providers: new Map(),
    accounts: new Map(accounts.map((a) => [a.name, a])),
    models: new Map(),
    defaultModels: new Map(),
    maxDecisionBodyBytes: 65536,
    principalLimits: { users: new Map(Object.entries(users)), teams: new Map() },
  };
}

const allow = (md: Allow['metadata']): Allow => ({
  kind: 'allow',
  headersToSet: [{ key: 'authorization', value: 'Bearer sk_a' }],
  headersToRemove: [],
  queryParametersToRemove: [],
  metadata: { provider: 'smallest', model_type: 'tts', route_kind: 'rest', user: 'alice', teams: 'voice', ...md },
});

describe('admitDecision', () => {
  it('takes a TTS unit of the decision\'s account and keeps the allow as it is', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot([account('a', 1)]);
    const d = allow({ account: 'a' });
    const first = admitDecision(ledger, d, s);
    expect(first).toMatchObject({ kind: 'granted', admission: 'tts-request' });
    if (first.kind === 'granted') expect(first.decision).toBe(d);
    expect(admitDecision(ledger, d, s)).toMatchObject({ kind: 'refused', refusal: { scope: 'account', name: 'a', limit: 'concurrency' } });
  });

  it('with several accounts, moves to the one with room and injects its key', () => {
    const ledger = createAdmissionLedger();
    const s = snapshot([account('a', 1), account('b', 1)]);
    const d = allow({ account: 'a', accounts: 'a,b' });
    const one = admitDecision(ledger, d, s);
    const two = admitDecision(ledger, d, s);
    const accounts = [one, two].map((x) => (x.kind === 'granted' ? x.decision.metadata.account : undefined));
    expect(accounts.sort()).toEqual(['a', 'b']);
    const onB = [one, two].find((x) => x.kind === 'granted' && x.decision.metadata.account === 'b');
    expect(onB?.kind === 'granted' && onB.decision.headersToSet).toEqual([{ key: 'authorization', value: 'Bearer sk_b' }]);
    expect(admitDecision(ledger, d, s).kind).toBe('refused');
  });
});

describe('candidatesOf / bindAccount', () => {
  it('lists the decision\'s account first, then the others, once each', () => {
    expect(candidatesOf({ account: 'b', accounts: 'a,b,,c' })).toEqual(['a', 'b', 'c']);
    expect(candidatesOf({ account: 'x', accounts: 'a,b' })).toEqual(['x', 'a', 'b']);
    expect(candidatesOf({})).toEqual([]);
  });

  it('leaves the allow alone for its own or an unknown account', () => {
    const s = snapshot([account('a', 1)]);
    const d = allow({ account: 'a' });
    expect(bindAccount(d, s, 'a')).toBe(d);
    expect(bindAccount(d, s, 'nope')).toBe(d);
    expect(bindAccount(d, s, undefined)).toBe(d);
  });
});

describe('limitDenial', () => {
  it('is a 429 with Retry-After whose body is the edge\'s, naming scope and limit', () => {
    const { deny, body } = limitDenial({ kind: 'refused', scope: 'user', name: 'alice', limit: 'max_units', max: 1, retryAfterMs: 1500 }, { user: 'alice' });
    expect(deny).toMatchObject({ kind: 'deny', status: 429, code: 'user_limit_exceeded', headers: { 'retry-after': '2' }, metadata: { user: 'alice' } });
    expect(JSON.parse(body)).toEqual({
      error: { code: 'user_limit_exceeded', message: deny.message, scope: 'user', limit: 'max_units', retry_after_seconds: 2 },
    });
  });
});
