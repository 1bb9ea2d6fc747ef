import { describe, expect, it } from 'vitest';
import { CATALOGUES } from '../catalogue/endpoints.ts';
import { admissionKind, chainOf } from './kinds.ts';

describe('admissionKind', () => {
  it('classifies every endpoint of the catalogue by what the provider counts', () => {
    const kinds = Object.fromEntries(CATALOGUES.get('smallest')!.endpoints.map((e) => [e.id, admissionKind({ provider: 'smallest', endpoint: e.id })]));
    expect(kinds).toMatchObject({
      'tts.sync': 'tts-request',
      'tts.sse': 'tts-request',
      'tts.unified.sync': 'tts-request',
      'tts.unified.sse': 'tts-request',
      'tts.ws': 'tts-session',
      'tts.unified.ws': 'tts-session',
      'stt.rest': 'stt-request',
      'stt.unified.rest': 'stt-request',
      'stt.ws': 'stt-session',
      'stt.unified.ws': 'stt-session',
      'voices.list': 'other',
      'voices.cloned.add': 'other',
    });
  });

  it('falls back to route kind and model type, reading an unknown endpoint as the metered one', () => {
    expect(admissionKind({ route_kind: 'websocket', model_type: 'stt' })).toBe('stt-session');
    expect(admissionKind({ route_kind: 'websocket' })).toBe('tts-session');
    expect(admissionKind({ route_kind: 'sse', model_type: 'tts' })).toBe('tts-request');
    expect(admissionKind({ route_kind: 'rest', model_type: 'stt' })).toBe('stt-request');
  });
});

describe('chainOf', () => {
  it('reads user, comma-joined teams and account from the metadata', () => {
    expect(chainOf({ user: 'alice', teams: 'design,voice', account: 'acct' })).toEqual({ user: 'alice', teams: ['design', 'voice'], account: 'acct' });
    expect(chainOf({})).toEqual({ teams: [] });
  });
});
