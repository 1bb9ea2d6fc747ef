import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashServiceKey, isServiceKeyShaped, newServiceKey } from './service-key.ts';

describe('service keys', () => {
  it('are vg_ + 32 random bytes, stored as SHA-256 of the whole key, with a short hint', () => {
    const a = newServiceKey();
    const b = newServiceKey();
    expect(a.plaintext).toMatch(/^vg_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.plaintext.slice(3), 'base64url')).toHaveLength(32);
    expect(a.plaintext).not.toBe(b.plaintext);
    expect(a.hash).toBe(createHash('sha256').update(a.plaintext).digest('hex'));
    expect(hashServiceKey(a.plaintext)).toBe(a.hash);
    expect(a.hint).toBe(a.plaintext.slice(0, 7));
    expect(isServiceKeyShaped(a.plaintext)).toBe(true);
    expect(isServiceKeyShaped(`${a.plaintext}x`)).toBe(false);
    expect(isServiceKeyShaped('eyJhbGciOiJFUzI1NiJ9.e30.sig')).toBe(false);
  });
});
