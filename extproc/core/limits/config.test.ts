/** The limits fields of the configuration document: defaults, compilation and clear errors. */
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../config/compile.ts';
import { configDocument } from '../config/schema.ts';

function doc(extra: { limits?: unknown; account?: Record<string, unknown>; issuerName?: string } = {}) {
  return {
    version: 1,
    identity: { issuers: [{ issuer: 'https://idp.test', audiences: ['vg'], jwks: { keys: [{ kty: 'EC' }] }, ...(extra.issuerName ? { name: extra.issuerName } : {}) }] },
    providers: { smallest: {} },
    accounts: [{ name: 'acct', token: 'env:K', ...extra.account }],
    models: [{ name: 'lightning-v3.1', type: 'tts', account: 'acct' }],
    ...(extra.limits !== undefined ? { limits: extra.limits } : {}),
  };
}

const ctx = { resolveSecret: async () => ({ ok: true as const, value: 'sk_x' }), origin: 'test', version: 1 };

describe('limits configuration', () => {
  it('defaults ws_per_unit to 5 and compiles user and team limits', async () => {
    const parsed = configDocument.parse(
      doc({ account: { concurrency: 3 }, limits: { users: { alice: { max_units: 2 } }, teams: { voice: { max_sessions: 4, requests_per_minute: 60 } } } }),
    );
    const r = await compileConfig(parsed, ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(r.snapshot.accounts.get('acct')).toMatchObject({ concurrency: 3, wsPerUnit: 5 });
    expect(r.snapshot.principalLimits?.users.get('alice')).toEqual({ maxUnits: 2 });
    expect(r.snapshot.principalLimits?.teams.get('voice')).toEqual({ maxSessions: 4, requestsPerMinute: 60 });
    expect(r.snapshot.maxDecisionBodyBytes).toBe(65_536);
  });

  it('refuses zero, unknown fields, empty entries and a bad ws_per_unit, each at its path', () => {
    const r = configDocument.safeParse(
      doc({ account: { ws_per_unit: 0 }, limits: { users: { alice: { max_units: 0 }, bob: {} }, teams: { voice: { max_unit: 1 } } } }),
    );
    expect(r.success).toBe(false);
    const issues = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(issues.some((i) => i.startsWith('accounts.0.ws_per_unit'))).toBe(true);
    expect(issues.some((i) => i.startsWith('limits.users.alice.max_units'))).toBe(true);
    expect(issues).toContain('limits.users.bob: set at least one of max_units, max_sessions, requests_per_minute, max_session_seconds');
    expect(issues.some((i) => i.startsWith('limits.teams.voice') && /max_unit/.test(i))).toBe(true);
  });

  it("compiles a team's bounded wait, alone or beside a cap", async () => {
    const parsed = configDocument.parse(
      doc({ limits: { teams: { voice: { max_units: 1, wait: { max_ms: 2000, max_waiters: 2 } }, batch: { wait: { max_ms: 30_000, max_waiters: 1000 } } } } }),
    );
    const r = await compileConfig(parsed, ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(r.snapshot.principalLimits?.teams.get('voice')).toEqual({ maxUnits: 1, wait: { maxMs: 2000, maxWaiters: 2 } });
    expect(r.snapshot.principalLimits?.teams.get('batch')).toEqual({ wait: { maxMs: 30_000, maxWaiters: 1000 } });
  });

  it('refuses a wait on a user, and a wait that is not positive whole numbers within its caps, each at its path', () => {
    const r = configDocument.safeParse(
      doc({
        limits: {
          users: { alice: { max_units: 1, wait: { max_ms: 100, max_waiters: 1 } } },
          teams: {
            zero: { wait: { max_ms: 0, max_waiters: 1 } },
            long: { wait: { max_ms: 30_001, max_waiters: 1 } },
            many: { wait: { max_ms: 100, max_waiters: 1001 } },
            half: { wait: { max_ms: 1.5, max_waiters: 1 } },
            partial: { wait: { max_ms: 100 } },
            typo: { wait: { max_ms: 100, max_waiters: 1, fifo: true } },
          },
        },
      }),
    );
    expect(r.success).toBe(false);
    const paths = r.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toContain('limits.users.alice');
    expect(paths).toContain('limits.teams.zero.wait.max_ms');
    expect(paths).toContain('limits.teams.long.wait.max_ms');
    expect(paths).toContain('limits.teams.many.wait.max_waiters');
    expect(paths).toContain('limits.teams.half.wait.max_ms');
    expect(paths).toContain('limits.teams.partial.wait.max_waiters');
    expect(paths).toContain('limits.teams.typo.wait');
  });

  it('refuses a limit on a name qualified with no issuer\'s name', async () => {
    const r = await compileConfig(configDocument.parse(doc({ issuerName: 'corp', limits: { users: { 'crop:alice': { max_units: 1 } } } })), ctx);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.map((i) => i.path)).toEqual(['limits.users.crop:alice']);
  });
});
