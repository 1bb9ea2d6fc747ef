/**
 * Issue 9, point 15: the voice catalogue through the edge, on the example config and the
 * simulator. Listing voices and managing cloned voices work for a caller entitled to the path's
 * model — the provider sees the account's key, never the caller's token, and the body unchanged —
 * and are refused, without reaching the provider, for a caller who is not. Nothing is billed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExampleEdge, type ExampleEdge } from './example-edge.ts';

let x: ExampleEdge;
beforeAll(async () => {
  x = await startExampleEdge();
});
afterAll(async () => {
  await x?.close();
});

const call = (method: string, path: string, token: string, init: { body?: RequestInit["body"]; headers?: Record<string, string> } = {}) =>
  fetch(`${x.edge.url}${path}`, { method, ...(init.body !== undefined ? { body: init.body } : {}), headers: { authorization: `Bearer ${token}`, ...init.headers } });

/** Requests the simulator received after `before` of them. */
const receivedSince = (before: number) => x.sim.requests().slice(before);

interface Voice {
  voiceId: string;
  displayName: string;
}

describe('GET /{model}/get_voices', () => {
  it('alice (team voice) lists the voices of lightning-v3.1, on the account key, unbilled', async () => {
    const before = x.sim.requests().length;
    const spans = x.spans.length;
    const res = await call('GET', '/smallest/waves/v1/lightning-v3.1/get_voices', x.tokens.alice);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { voices: Voice[] };
    expect(body.voices.map((v) => v.voiceId)).toContain('magnus');
    expect(body.voices.every((v) => typeof v.displayName === 'string')).toBe(true);
    const [up] = receivedSince(before);
    expect(up).toMatchObject({ method: 'GET', url: '/waves/v1/lightning-v3.1/get_voices' });
    expect(up!.headers['authorization']).toBe(`Bearer ${x.keys.tts}`);
    const span = await x.spanOf('/smallest/waves/v1/lightning-v3.1/get_voices', spans);
    expect(span).toMatchObject({ decision: 'allow', status: 200, model: 'lightning-v3.1', account: 'smallest-tts', user: 'alice', costUsd: '0' });
    expect(span.characters ?? 0).toBe(0);
  });

  it('the old SDK path (/api/v1/lightning/get_voices) is rewritten and served', async () => {
    const before = x.sim.requests().length;
    const res = await call('GET', '/smallest/api/v1/lightning/get_voices', x.tokens.alice);
    expect(res.status).toBe(200);
    expect(receivedSince(before).map((r) => r.url)).toEqual(['/waves/v1/lightning/get_voices']);
  });

  it('bob (pulse only) and mallory (no entitlement) get 403 not_entitled; nothing reaches the provider', async () => {
    const before = x.sim.requests().length;
    for (const token of [x.tokens.bob, x.tokens.mallory]) {
      const res = await call('GET', '/smallest/waves/v1/lightning-v3.1/get_voices', token);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_entitled');
    }
    expect(receivedSince(before)).toEqual([]);
  });

  it('no token: 401; an unconfigured model: 404 unknown_model', async () => {
    expect((await fetch(`${x.edge.url}/smallest/waves/v1/lightning-v3.1/get_voices`)).status).toBe(401);
    const res = await call('GET', '/smallest/waves/v1/lightning-v9/get_voices', x.tokens.alice);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unknown_model');
  });
});

describe('cloned voices (lightning-large, as npm smallestai manages them)', () => {
  it('alice adds, lists and deletes a clone: the multipart upload and the JSON delete body reach the provider (which parses both), on the account key', async () => {
    const before = x.sim.requests().length;
    const form = new FormData();
    form.append('displayName', 'Alice clone');
    form.append('file', new Blob([new Uint8Array(2048).fill(7)], { type: 'audio/wav' }), 'sample.wav');
    const added = await call('POST', '/smallest/api/v1/lightning-large/add_voice', x.tokens.alice, { body: form });
    expect(added.status).toBe(200);
    const { data } = (await added.json()) as { data: { voiceId: string; model: string } };
    expect(data.model).toBe('lightning-large');

    const listed = await call('GET', '/smallest/waves/v1/lightning-large/get_cloned_voices', x.tokens.alice);
    expect(((await listed.json()) as { voices: Voice[] }).voices).toEqual([expect.objectContaining({ voiceId: data.voiceId, displayName: 'Alice clone' })]);

    const del = await call('DELETE', '/smallest/api/v1/lightning-large', x.tokens.alice, {
      body: JSON.stringify({ voiceId: data.voiceId }),
      headers: { 'content-type': 'application/json' },
    });
    expect(del.status).toBe(200);
    expect(await del.json()).toEqual({ success: true, voiceId: data.voiceId });
    const after = await call('GET', '/smallest/waves/v1/lightning-large/get_cloned_voices', x.tokens.alice);
    expect(((await after.json()) as { voices: Voice[] }).voices).toEqual([]);

    const seen = receivedSince(before);
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      'POST /waves/v1/lightning-large/add_voice',
      'GET /waves/v1/lightning-large/get_cloned_voices',
      'DELETE /waves/v1/lightning-large',
      'GET /waves/v1/lightning-large/get_cloned_voices',
    ]);
    for (const r of seen) expect(r.headers['authorization']).toBe(`Bearer ${x.keys.tts}`);
    expect(String(seen[0]!.headers['content-type'])).toMatch(/^multipart\/form-data; boundary=/);
  });

  it('bob may not list, add or delete clones: 403, and the provider sees nothing', async () => {
    const before = x.sim.requests().length;
    const attempts: Array<[string, string, RequestInit["body"] | undefined]> = [
      ['GET', '/smallest/waves/v1/lightning-large/get_cloned_voices', undefined],
      ['POST', '/smallest/waves/v1/lightning-large/add_voice', new FormData()],
      ['DELETE', '/smallest/waves/v1/lightning-large', JSON.stringify({ voiceId: 'voice_x' })],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(method, path, x.tokens.bob, body !== undefined ? { body } : {});
      expect(res.status, `${method} ${path}`).toBe(403);
    }
    expect(receivedSince(before)).toEqual([]);
  });
});
