/**
 * ClusterGrants' shares of users' and teams' caps: each configured cap is a ledger entry of the
 * cap's size, split among pods by the same policy as an account's units (core/limits/grants.ts).
 */
import { describe, expect, it } from 'vitest';
import type { PrincipalLimitTable } from '../../core/config/snapshot.ts';
import type { GrantEntry, GrantRead, GrantStore } from '../../core/limits/grants.ts';
import { ClusterGrants, grantKey, principalGrantKey } from './grant-ledger.ts';

/** A compare-and-set store in memory (one process, so revisions are exact). */
function memoryStore(): GrantStore & { entries: Map<string, GrantRead> } {
  const entries = new Map<string, GrantRead>();
  return {
    entries,
    read: async (key) => entries.get(key),
    write: async (key: string, entry: GrantEntry, revision: number | undefined) => {
      const now = entries.get(key);
      if ((now?.revision ?? undefined) !== revision) return false;
      entries.set(key, { entry, revision: (now?.revision ?? 0) + 1 });
      return true;
    },
    close: async () => {},
  };
}

const table: PrincipalLimitTable = { users: new Map([['dave', { maxSessions: 1 }]]), teams: new Map([['voice', { maxUnits: 2, requestsPerMinute: 60 }]]) };

describe('ClusterGrants shares of user and team caps', () => {
  it('never grants more of a cap than it has across pods, and moves an idle share to the pod that is refused', async () => {
    const store = memoryStore();
    const inUse = new Map<string, number>();
    const pods = ['a', 'b', 'c'].map((id) => {
      const g = new ClusterGrants({ store, podId: id, heartbeatMs: 60_000 });
      g.bind(() => 0, (scope, name, resource) => inUse.get(`${id}/${scope}/${name}/${resource}`) ?? 0);
      return g;
    });
    for (const g of pods) await g.start([], table);
    const shares = () => pods.map((g) => g.share('team', 'voice', 'units', 2));
    // Only the configured caps get entries; the first two pods hold the cap as headroom.
    expect([...store.entries.keys()].sort()).toEqual([principalGrantKey('team', 'voice', 'units'), principalGrantKey('user', 'dave', 'sessions')].sort());
    expect(principalGrantKey('team', 'voice', 'units')).not.toBe(grantKey('voice', 'tts'));
    expect(shares()).toEqual([1, 1, 0]);
    expect(pods.reduce((s, g) => s + g.share('user', 'dave', 'sessions', 1), 0)).toBe(1);

    // Pod c is refused on its share: the idle pods give theirs back and c borrows (a few settles).
    for (let round = 0; round < 4 && pods[2]!.share('team', 'voice', 'units', 2) === 0; round++) {
      pods[2]!.shareExhausted('team', 'voice', 'units', 2);
      for (const g of pods) await g.heartbeat();
    }
    expect(pods[2]!.share('team', 'voice', 'units', 2)).toBeGreaterThanOrEqual(1);
    expect(shares().reduce((s, n) => s + n, 0)).toBeLessThanOrEqual(2);

    // A lowered cap (a reload) bounds the share at once, before any settle.
    expect(pods[2]!.share('team', 'voice', 'units', 1)).toBeLessThanOrEqual(1);
    for (const g of pods) await g.close();
    // Closed pods give everything back.
    const entry = store.entries.get(principalGrantKey('team', 'voice', 'units'))!.entry;
    expect(Object.keys(entry.grants)).toEqual([]);
  });
});
