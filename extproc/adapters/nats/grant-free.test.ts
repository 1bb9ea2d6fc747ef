/** ClusterGrants.free: the unleased units of a pool as last settled, the hint for choosing among a model's accounts. */
import { describe, expect, it } from 'vitest';
import type { AccountConfig } from '../../core/config/snapshot.ts';
import type { GrantEntry, GrantRead, GrantStore } from '../../core/limits/grants.ts';
import { ClusterGrants } from './grant-ledger.ts';

/** A compare-and-set store in memory (one process, so revisions are exact). */
function memoryStore(): GrantStore {
  const entries = new Map<string, GrantRead>();
  return {
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

const account: AccountConfig = { name: 'acct', provider: 'smallest', token: 'sk', users: new Set(), teams: new Set(), concurrency: 4, wsPerUnit: 5 };

describe('ClusterGrants.free', () => {
  it('is unknown before a settle, then what no live lease holds', async () => {
    const store = memoryStore();
    const a = new ClusterGrants({ store, podId: 'a', heartbeatMs: 60_000 });
    const b = new ClusterGrants({ store, podId: 'b', heartbeatMs: 60_000 });
    expect(a.free(account, 'tts')).toBeUndefined();
    await a.start([account]);
    // Pod a holds its headroom (1 unit); 3 are free.
    expect(a.units(account, 'tts')).toBe(1);
    expect(a.free(account, 'tts')).toBe(3);
    await b.start([account]);
    expect(b.free(account, 'tts')).toBe(2);
    await a.heartbeat();
    expect(a.free(account, 'tts')).toBe(2);
    await a.close();
    await b.close();
  });
});
