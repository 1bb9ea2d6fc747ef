/** The simulator's voice catalogue: voices per model, cloned voices per key, as npm smallestai calls them. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';

let sim: SimulatorHandle;
beforeAll(async () => {
  sim = await startSimulator({ port: 0, profile: 'instant', accounts: [{ key: 'sk_a', units: 1 }, { key: 'sk_b', units: 1 }] });
});
afterAll(() => sim.close());

const as = (key: string, method: string, path: string, body?: RequestInit["body"], headers: Record<string, string> = {}) =>
  fetch(`${sim.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...headers }, ...(body !== undefined ? { body } : {}) });

function sample(name: string): FormData {
  const form = new FormData();
  form.append('displayName', name);
  form.append('file', new Blob([new Uint8Array(1000)], { type: 'audio/wav' }), 'me.wav');
  return form;
}

describe('voice catalogue', () => {
  it('lists the voices TTS accepts, on both path generations; unknown models 404; no key 401', async () => {
    for (const path of ['/waves/v1/lightning-v3.1/get_voices', '/api/v1/lightning/get_voices']) {
      const r = await as('sk_a', 'GET', path);
      expect(r.status).toBe(200);
      const { voices } = (await r.json()) as { voices: Array<{ voiceId: string; displayName: string; tags: { gender: string } }> };
      expect(voices.find((v) => v.voiceId === 'magnus')).toMatchObject({ displayName: 'Magnus', tags: { gender: 'male' } });
    }
    expect((await as('sk_a', 'GET', '/waves/v1/nope/get_voices')).status).toBe(404);
    expect((await fetch(`${sim.url}/waves/v1/lightning-v3.1/get_voices`)).status).toBe(401);
    expect((await as('sk_a', 'POST', '/waves/v1/lightning-v3.1/get_voices')).status).toBe(405);
  });

  it('cloned voices are per key: add, list, delete; a second delete is 404', async () => {
    const added = await as('sk_a', 'POST', '/api/v1/lightning-large/add_voice', sample('Mine'));
    expect(added.status).toBe(200);
    const { data } = (await added.json()) as { data: { voiceId: string; model: string; status: string } };
    expect(data).toMatchObject({ model: 'lightning-large', status: 'completed' });
    const list = async (key: string) => ((await (await as(key, 'GET', '/waves/v1/lightning-large/get_cloned_voices')).json()) as { voices: Array<{ voiceId: string }> }).voices.map((v) => v.voiceId);
    expect(await list('sk_a')).toEqual([data.voiceId]);
    expect(await list('sk_b')).toEqual([]);
    const del = (key: string) => as(key, 'DELETE', '/waves/v1/lightning-large', JSON.stringify({ voiceId: data.voiceId }), { 'content-type': 'application/json' });
    expect((await del('sk_b')).status).toBe(404);
    expect(await (await del('sk_a')).json()).toEqual({ success: true, voiceId: data.voiceId });
    expect((await del('sk_a')).status).toBe(404);
  });

  it('refuses a clone without displayName or file, and a delete without voiceId', async () => {
    const noFile = new FormData();
    noFile.append('displayName', 'x');
    expect((await as('sk_a', 'POST', '/waves/v1/lightning-large/add_voice', noFile)).status).toBe(400);
    expect((await as('sk_a', 'POST', '/waves/v1/lightning-large/add_voice', '{"displayName":"x"}', { 'content-type': 'application/json' })).status).toBe(400);
    expect((await as('sk_a', 'DELETE', '/waves/v1/lightning-large', '{}')).status).toBe(400);
    expect((await as('sk_a', 'GET', '/waves/v1/lightning-large')).status).toBe(404);
  });
});
