import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { AccountConfig, Snapshot } from '../../core/config/snapshot.ts';
import { createAdmissionLedger } from '../../core/limits/ledger.ts';
import { limitMetrics } from './limit-metrics.ts';

const acct: AccountConfig = { name: 'acct', provider: 'smallest', token: 'sk_x', users: new Set(), teams: new Set(), concurrency: 2, wsPerUnit: 3 };
const snapshot: Snapshot = {
  version: 1,
  origin: 'test',
  issuers: [],
  providers: new Map(),
  accounts: new Map([[acct.name, acct]]),
  models: new Map(),
  defaultModels: new Map(),
  maxDecisionBodyBytes: 65536,
  principalLimits: { users: new Map([['alice-secret-name', { maxUnits: 1 }]]), teams: new Map() },
};

describe('limitMetrics', () => {
  it('shows units in use and capacity per account pool, and refusals by scope only', async () => {
    const registry = new Registry();
    const m = limitMetrics(registry, createAdmissionLedger(), () => snapshot.accounts.values());
    const alice = { user: 'alice-secret-name', teams: [], account: 'acct' };
    expect(m.ledger.acquire(snapshot, alice, 'tts-request').kind).toBe('granted');
    expect(m.ledger.acquire(snapshot, alice, 'tts-request')).toMatchObject({ kind: 'refused', scope: 'user' });
    expect(m.ledger.acquire(snapshot, { teams: [], account: 'acct' }, 'tts-request').kind).toBe('granted');
    expect(m.ledger.acquire(snapshot, { teams: [], account: 'acct' }, 'tts-request')).toMatchObject({ kind: 'refused', scope: 'account' });
    expect(m.ledger.acquireAny(snapshot, { teams: [], account: 'acct' }, ['acct'], 'tts-request')).toMatchObject({ kind: 'refused', scope: 'account' });
    m.slotReleased('sweeper');
    const text = await registry.metrics();
    expect(text).toContain('voicegate_limit_units_in_use{account="acct",pool="tts_units"} 2');
    expect(text).toContain('voicegate_limit_units_in_use{account="acct",pool="stt_units"} 0');
    expect(text).toContain('voicegate_limit_units_capacity{account="acct",pool="tts_units"} 2');
    expect(text).toContain('voicegate_limit_units_capacity{account="acct",pool="ws_slots"} 6');
    expect(text).toContain('voicegate_limit_rejections_total{limit="user"} 1');
    expect(text).toContain('voicegate_limit_rejections_total{limit="team"} 0');
    expect(text).toContain('voicegate_limit_rejections_total{limit="account"} 2');
    expect(text).toContain('voicegate_limit_slot_releases_total{by="sweeper"} 1');
    expect(text).not.toContain('alice-secret-name');
  });

  it('shows units in use of capped teams only, waits by outcome, and counts no refusal a wait retried', async () => {
    const registry = new Registry();
    const teams = new Map([
      ['voice', { maxUnits: 2, wait: { maxMs: 1000, maxWaiters: 2 } }],
      ['batch', { requestsPerMinute: 10 }],
    ]);
    const s: Snapshot = { ...snapshot, principalLimits: { users: new Map(), teams } };
    const m = limitMetrics(registry, createAdmissionLedger(), () => s.accounts.values(), () => teams);
    const voice = { user: 'bob', teams: ['voice', 'uncapped-from-a-token'], account: 'acct' };
    expect(m.ledger.acquire(s, voice, 'tts-request').kind).toBe('granted');
    const quiet = m.ledger.uncounted!();
    expect(quiet.acquire(s, voice, 'tts-request').kind).toBe('granted');
    const refusal = quiet.acquire(s, voice, 'tts-request');
    expect(refusal).toMatchObject({ kind: 'refused', scope: 'team' });
    if (refusal.kind === 'refused') m.ledger.refused!(refusal);
    m.ledger.waited!('admitted', 120);
    m.ledger.waited!('timed_out', 2000);
    const text = await registry.metrics();
    expect(text).toContain('voicegate_limit_units_in_use_team{team="voice"} 2');
    expect(text).not.toContain('team="batch"');
    expect(text).not.toContain('uncapped-from-a-token');
    expect(text).toContain('voicegate_limit_rejections_total{limit="team"} 1');
    expect(text).toContain('voicegate_limit_wait_seconds_count{outcome="admitted"} 1');
    expect(text).toContain('voicegate_limit_wait_seconds_bucket{le="0.25",outcome="admitted"} 1');
    expect(text).toContain('voicegate_limit_wait_seconds_count{outcome="timed_out"} 1');
    expect(text).toContain('voicegate_limit_wait_seconds_sum{outcome="timed_out"} 2');
    expect(text).toContain('voicegate_limit_wait_seconds_count{outcome="cancelled"} 0');
  });

  it('forwards release notices of the ledger it wraps', () => {
    const m = limitMetrics(new Registry(), createAdmissionLedger(), () => snapshot.accounts.values());
    let heard = 0;
    m.ledger.onRelease!(() => heard++);
    const a = m.ledger.acquire(snapshot, { teams: [], account: 'acct' }, 'tts-request');
    if (a.kind === 'granted') a.lease.release();
    expect(heard).toBe(1);
  });
});
