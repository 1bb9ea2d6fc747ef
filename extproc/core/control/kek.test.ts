import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KekConfigError } from './errors.ts';
import { parseKekSpec } from './kek.ts';

const b64 = () => randomBytes(32).toString('base64');

describe('parseKekSpec', () => {
  it('reads the list form, current first, with commas or whitespace', () => {
    const a = b64();
    const b = randomBytes(32).toString('base64url');
    const keys = parseKekSpec(`k2:${a}, k1:${b}\n`);
    expect(keys.map((k) => k.id)).toEqual(['k2', 'k1']);
    expect(Buffer.from(keys[0]!.key).toString('base64')).toBe(a);
    expect(keys[1]!.key).toHaveLength(32);
  });

  it('reads a YAML or JSON document', () => {
    const a = b64();
    expect(parseKekSpec(`keys:\n  - id: main\n    key: ${a}\n`).map((k) => k.id)).toEqual(['main']);
    expect(parseKekSpec(JSON.stringify({ keys: [{ id: 'j1', key: a }, { id: 'j0', key: b64() }] })).map((k) => k.id)).toEqual(['j1', 'j0']);
  });

  it('refuses short keys, bad ids, duplicates and garbage without quoting key material', () => {
    const short = randomBytes(16).toString('base64');
    const dup = b64();
    for (const [text, pattern] of [
      [`k1:${short}`, /32 bytes/],
      [`bad id!:${b64()}`, /VOICEGATE_KEK/],
      [`k1:${dup},k1:${b64()}`, /unique/],
      ['', /empty/],
      ['keys: [', /neither/],
      ['{"keys": []}', /at least one/],
      [`{"keys": [{"id": "k", "key": "${dup}", "extra": 1}]}`, /invalid/],
    ] as const) {
      let err: unknown;
      try {
        parseKekSpec(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(KekConfigError);
      expect((err as Error).message).toMatch(pattern);
      expect((err as Error).message).not.toContain(short);
      expect((err as Error).message).not.toContain(dup);
    }
  });
});
