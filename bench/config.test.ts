import { describe, expect, it } from 'vitest';
import { benchConfigText, benchSnapshot, BENCH_CONCURRENCY } from './config.ts';
import { NO_LIMITS } from './servers/limits.ts';

describe('bench configuration', () => {
  it('caps team voice when asked (case 7) and keeps the example limits', async () => {
    const s = await benchSnapshot('http://127.0.0.1:9', { teamCap: 7 });
    expect(s.principalLimits?.teams.get('voice')).toMatchObject({ maxUnits: 7, maxSessions: 7 });
    expect(s.principalLimits?.teams.get('studio')).toMatchObject({ maxUnits: 4 });
    expect(s.accounts.get('smallest-tts')?.concurrency).toBe(BENCH_CONCURRENCY);
  });

  it('leaves team voice uncapped by default, as cases 1–6 run', async () => {
    const s = await benchSnapshot('http://127.0.0.1:9');
    expect(s.principalLimits?.teams.get('voice')).toBeUndefined();
    expect(benchConfigText('http://127.0.0.1:9')).toContain('upstream: http://127.0.0.1:9');
  });
});

describe('the "no limits" ledger of case 7', () => {
  it('grants every admission on the named account and counts nothing', () => {
    const chain = { user: 'alice', teams: ['voice'], account: 'smallest-tts' };
    const a = NO_LIMITS.acquire(undefined as never, chain, 'tts-request');
    expect(a.kind).toBe('granted');
    if (a.kind !== 'granted') return;
    expect(a.lease.account).toBe('smallest-tts');
    expect(NO_LIMITS.inUse('account', 'smallest-tts', 'tts_units')).toBe(0);
    expect(a.lease.release()).toBe(true);
    expect(a.lease.release()).toBe(false);
    const any = NO_LIMITS.acquireAny(undefined as never, { user: 'alice', teams: [] }, ['smallest-tts-2', 'smallest-tts'], 'tts-request');
    expect(any.kind === 'granted' && any.lease.account).toBe('smallest-tts-2');
  });
});
