import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Keyring } from './envelope.ts';
import { openSnapshotCopy, sealSnapshotCopy, SnapshotCopyError } from './snapshot-copy.ts';

const ring = (id = 's1') => new Keyring([{ id, key: new Uint8Array(randomBytes(32)) }]);
// Larger than Keyring.seal's 4 KiB cap, as a payload with many accounts is.
const PAYLOAD = JSON.stringify({ format: 1, revision: 12, filler: 'x'.repeat(20_000), marker: 'collaborator-alice' });

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SnapshotCopyError);
    return (err as SnapshotCopyError).reason;
  }
  throw new Error('expected a SnapshotCopyError');
}

describe('snapshot disk copy', () => {
  it('round trip: opens to the same payload and revision; the file shows none of it', () => {
    const keys = ring();
    const text = sealSnapshotCopy(keys, PAYLOAD, 12);
    expect(text).not.toContain('collaborator-alice');
    expect(openSnapshotCopy(keys, text)).toEqual({ revision: 12, payload: PAYLOAD });
  });

  it('refuses a copy under another key, a flipped byte, an edited revision and a truncated file', () => {
    const keys = ring();
    const text = sealSnapshotCopy(keys, PAYLOAD, 12);
    expect(reasonOf(() => openSnapshotCopy(ring('s1'), text))).toBe('key');
    const json = JSON.parse(text) as { revision: number; payload: string };
    const body = Buffer.from(json.payload, 'base64');
    body[20]! ^= 1;
    expect(reasonOf(() => openSnapshotCopy(keys, JSON.stringify({ ...json, payload: body.toString('base64') })))).toBe('tampered');
    expect(reasonOf(() => openSnapshotCopy(keys, JSON.stringify({ ...json, revision: 13 })))).toBe('key');
    expect(reasonOf(() => openSnapshotCopy(keys, text.slice(0, text.length / 2)))).toBe('malformed');
  });

  it('a rotated keyring still opens a copy sealed under its previous key', () => {
    const old = { id: 'old', key: new Uint8Array(randomBytes(32)) };
    const text = sealSnapshotCopy(new Keyring([old]), PAYLOAD, 3);
    const rotated = new Keyring([{ id: 'new', key: new Uint8Array(randomBytes(32)) }, old]);
    expect(openSnapshotCopy(rotated, text).payload).toBe(PAYLOAD);
  });
});
