/**
 * The span's wire form: `endedBy` (protos/span.proto `ended_by`, field 36) round-trips, and spans
 * written before the field existed (no `endedBy` key) still decode, as ''.
 */
import { describe, expect, it } from 'vitest';
import { decodeSpan, encodeSpan, SpanDecodeError } from './span.ts';
import { endedByOf } from './span-builder.ts';
import { makeSpan } from '../../../test/usage/helpers.ts';

describe('span endedBy', () => {
  it('round-trips every side', () => {
    for (const endedBy of ['client', 'upstream', 'gateway', 'policy', ''] as const) {
      const span = makeSpan({ endedBy });
      expect(decodeSpan(encodeSpan(span))).toEqual(span);
    }
  });

  it('decodes a span without the field (an older writer) as ""', () => {
    const { endedBy: _dropped, ...old } = makeSpan({ endedBy: 'client' });
    const text = JSON.stringify(old);
    expect(text).not.toContain('endedBy');
    expect(decodeSpan(text).endedBy).toBe('');
  });

  it('refuses a side it does not know', () => {
    expect(() => decodeSpan(JSON.stringify({ ...makeSpan(), endedBy: 'someone' }))).toThrow(SpanDecodeError);
  });
});

describe('span limit fields (waited_ms, limit_scope, limit_name: fields 37–39)', () => {
  it('round-trips a wait and the limit that refused', () => {
    const span = makeSpan({ status: 429, waitedMs: 2003.5, limitScope: 'team', limitName: 'max_units' });
    expect(decodeSpan(encodeSpan(span))).toEqual(span);
  });

  it('decodes spans without them (older writers) and with proto3 defaults written out as absent', () => {
    const old = decodeSpan(JSON.stringify(makeSpan()));
    expect(old.waitedMs).toBeUndefined();
    expect(old.limitScope).toBeUndefined();
    expect(old.limitName).toBeUndefined();
    const defaults = decodeSpan(JSON.stringify({ ...makeSpan(), limitScope: '', limitName: '' }));
    expect(defaults.limitScope).toBeUndefined();
    expect(defaults.limitName).toBeUndefined();
  });

  it('refuses a scope it does not know and a negative wait', () => {
    expect(() => decodeSpan(JSON.stringify({ ...makeSpan(), limitScope: 'org' }))).toThrow(SpanDecodeError);
    expect(() => decodeSpan(JSON.stringify({ ...makeSpan(), waitedMs: -1 }))).toThrow(SpanDecodeError);
  });
});

describe('endedByOf (the side, when the transport did not say)', () => {
  it('maps how an exchange ended to who ended it', () => {
    expect(endedByOf('deny', '')).toBe('gateway');
    expect(endedByOf('allow', '')).toBe('');
    expect(endedByOf('allow', 'client_aborted')).toBe('client');
    expect(endedByOf('allow', 'upstream_reset')).toBe('upstream');
    expect(endedByOf('allow', 'upstream_unreachable')).toBe('upstream');
    for (const e of ['upstream_timeout', 'stream_idle_timeout', 'idle_timeout', 'drain_timeout', 'request_timeout', 'user_limit_exceeded', 'no_route']) {
      expect(endedByOf('allow', e)).toBe('gateway');
    }
    for (const e of ['entitlement_revoked', 'account_changed', 'token_expired', 'max_session_duration']) expect(endedByOf('allow', e)).toBe('policy');
    // Envoy's free-text termination details: not guessed.
    expect(endedByOf('allow', 'delayed close timeout')).toBe('');
  });
});
