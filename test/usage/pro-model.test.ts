/**
 * Issue 9, point 13: Lightning v3.1 Pro is a model of its own in the example config. A request
 * for `lightning_v3.1_pro` is served as Pro and billed as Pro — its own model name and price in the
 * span — not as lightning-v3.1 (which an alias made it: the provider served Pro while the span
 * billed the standard model). On a lightning-v3.1 path the body cannot switch to Pro.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExampleEdge, type ExampleEdge } from '../edge/example-edge.ts';

let x: ExampleEdge;
beforeAll(async () => {
  x = await startExampleEdge();
});
afterAll(async () => {
  await x?.close();
});

/** 40 code points. */
const TEXT = 'Premium voice, billed at its own price!!';

const post = (path: string, body: Record<string, unknown>) =>
  fetch(`${x.edge.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${x.tokens.alice}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('Pro in the example config', () => {
  it('compiles as its own model: lightning_v3.1_pro no longer resolves to lightning-v3.1', () => {
    const models = x.snapshot.models.get('smallest')!;
    const pro = models.get('lightning_v3.1_pro');
    expect(pro?.name).toBe('lightning-v3.1-pro');
    expect(pro).toBe(models.get('lightning-v3.1-pro'));
    expect(pro).not.toBe(models.get('lightning-v3.1'));
    expect(models.get('lightning_v3.1')?.name).toBe('lightning-v3.1');
    expect(pro?.accounts[0]?.price.perThousandChars).toBe('0.0195');
  });

  it('POST /waves/v1/tts with model lightning_v3.1_pro: served, and the span names Pro at its price', async () => {
    expect([...TEXT].length).toBe(40);
    const before = x.sim.requests().length;
    const spans = x.spans.length;
    const res = await post('/smallest/waves/v1/tts', { text: TEXT, voice_id: 'meher', model: 'lightning_v3.1_pro', output_format: 'wav' });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(44);
    expect(x.sim.requests().slice(before).map((r) => r.url)).toEqual(['/waves/v1/tts']);
    const span = await x.spanOf('/smallest/waves/v1/tts', spans);
    // 40 characters at Pro's 0.0195 USD per 1,000.
    expect(span).toMatchObject({ decision: 'allow', model: 'lightning-v3.1-pro', account: 'smallest-tts', characters: 40, costUsd: '0.00078' });
  });

  it('the path generation of Pro is metered as Pro too', async () => {
    const spans = x.spans.length;
    const res = await post('/smallest/waves/v1/lightning-v3.1-pro/get_speech', { text: TEXT, voice_id: 'meher' });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const span = await x.spanOf('/smallest/waves/v1/lightning-v3.1-pro/get_speech', spans);
    expect(span).toMatchObject({ model: 'lightning-v3.1-pro', characters: 40, costUsd: '0.00078' });
  });

  it('a lightning-v3.1 path whose body asks for Pro is refused (400 model_conflict) and never reaches the provider', async () => {
    const before = x.sim.requests().length;
    const res = await post('/smallest/waves/v1/lightning-v3.1/get_speech', { text: TEXT, voice_id: 'meher', model: 'lightning_v3.1_pro' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('model_conflict');
    expect(x.sim.requests().slice(before)).toEqual([]);
  });
});
