/**
 * Limits on REST and SSE through the real edge, decision and simulator: what the refused client
 * gets (429, Retry-After, the limit named), that the provider never sees a refused request, that
 * units come back when exchanges end — including when the client walks away mid-response.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../edge/helpers.ts';
import { speak, startLimitsStack, ttsRequestsSeen, type LimitsStack } from './stack.ts';

let stack: LimitsStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

interface LimitBody {
  error: { code: string; message: string; scope: string; limit: string; retry_after_seconds: number };
}

describe('REST and SSE limits', () => {
  it('refuses the third concurrent request of a user with max_units 2, before the provider, and admits the next once one ends', async () => {
    stack = await startLimitsStack({ concurrency: 10, limits: '  users: { alice: { max_units: 2 } }' });
    const alice = await stack.token('alice', ['voice']);
    const held = [speak(stack, alice, 600), speak(stack, alice, 600)];
    await until(() => ttsRequestsSeen(stack!.sim) === 2, 5000, 'two requests upstream');

    const third = await speak(stack, alice);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect(third.headers.get('content-type')).toContain('application/json');
    const body = (await third.json()) as LimitBody;
    expect(body.error).toMatchObject({ code: 'user_limit_exceeded', scope: 'user', limit: 'max_units', retry_after_seconds: 1 });
    expect(body.error.message).toContain('"alice"');
    expect(ttsRequestsSeen(stack.sim)).toBe(2);

    // Someone else on the same account is not held back by alice's cap.
    const other = await speak(stack, await stack.token('outsider'));
    expect(other.status).toBe(200);

    for (const r of await Promise.all(held)) {
      expect(r.status).toBe(200);
      await r.arrayBuffer();
    }
    const next = await speak(stack, alice);
    expect(next.status).toBe(200);
    await next.arrayBuffer();
  });

  it('shares a team limit between two users of the team, and not with a user outside it', async () => {
    stack = await startLimitsStack({ concurrency: 10, limits: '  teams: { voice: { max_units: 2 } }' });
    const alice = await stack.token('alice', ['voice']);
    const carol = await stack.token('carol', ['voice']);
    const held = [speak(stack, alice, 600), speak(stack, carol, 600)];
    await until(() => ttsRequestsSeen(stack!.sim) === 2, 5000, 'two requests upstream');

    for (const token of [alice, carol]) {
      const refused = await speak(stack, token);
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as LimitBody).error).toMatchObject({ code: 'team_limit_exceeded', scope: 'team', limit: 'max_units' });
    }
    const outsider = await speak(stack, await stack.token('outsider'));
    expect(outsider.status).toBe(200);
    await outsider.arrayBuffer();
    expect(ttsRequestsSeen(stack.sim)).toBe(3);
    for (const p of held) await (await p).arrayBuffer();
  });

  it("stops at the account's concurrency from the config, so the provider never has to refuse", async () => {
    // The simulator sells exactly the configured units and answers 429 (its own body) beyond them.
    stack = await startLimitsStack({ concurrency: 2 });
    const tokens = await Promise.all(['alice', 'carol', 'dave', 'erin', 'frank'].map((u) => stack!.token(u, ['voice'])));
    const answers = await Promise.all(
      tokens.map(async (t) => {
        const r = await speak(stack!, t, 400);
        return { status: r.status, body: r.status === 200 ? (await r.arrayBuffer(), undefined) : ((await r.json()) as LimitBody) };
      }),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(2);
    const refused = answers.filter((a) => a.status === 429);
    expect(refused).toHaveLength(3);
    // Every 429 is the gateway's, naming the account; none is the provider's rate-limit body.
    for (const r of refused) expect(r.body?.error).toMatchObject({ code: 'account_limit_exceeded', scope: 'account', limit: 'concurrency' });
    expect(ttsRequestsSeen(stack.sim)).toBe(2);
  });

  it('returns the unit of a REST client that disconnects mid-response', async () => {
    stack = await startLimitsStack({ concurrency: 10, limits: '  users: { alice: { max_units: 1 } }', speedFactor: 1 });
    const alice = await stack.token('alice', ['voice']);
    const abort = new AbortController();
    // An SSE stream of a long text at real-time pace: the response is in progress for seconds.
    const streaming = await fetch(`${stack.edge.url}/smallest/waves/v1/lightning-v3.1/stream`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'A long sentence that takes several seconds of audio to stream back. '.repeat(4), voice_id: 'magnus' }),
      signal: abort.signal,
    });
    expect(streaming.status).toBe(200);
    const reader = streaming.body!.getReader();
    await reader.read();
    expect((await speak(stack, alice)).status).toBe(429);

    abort.abort();
    const cut = Date.now();
    await until(() => stack!.ledger.inUse('user', 'alice', 'units') === 0, 2000, 'the unit back');
    const returnedMs = Date.now() - cut;
    expect(returnedMs).toBeLessThan(250);
    const next = await speak(stack, alice);
    expect(next.status).toBe(200);
    await next.arrayBuffer();
  });

  it('returns the unit of a REST client that leaves while the provider is still working', async () => {
    stack = await startLimitsStack({ concurrency: 10, limits: '  users: { alice: { max_units: 1 } }' });
    const alice = await stack.token('alice', ['voice']);
    const abort = new AbortController();
    const pending = speak(stack, alice, 5000, abort.signal).catch((err: unknown) => err);
    await until(() => ttsRequestsSeen(stack!.sim) === 1, 5000, 'the request upstream');
    expect((await speak(stack, alice)).status).toBe(429);
    abort.abort();
    const cut = Date.now();
    await until(() => stack!.ledger.inUse('user', 'alice', 'units') === 0, 2000, 'the unit back');
    expect(Date.now() - cut).toBeLessThan(250);
    expect(await pending).toBeInstanceOf(Error);
    const next = await speak(stack, alice);
    expect(next.status).toBe(200);
    await next.arrayBuffer();
  });

  it('counts requests per minute and answers with the exact wait', async () => {
    stack = await startLimitsStack({ concurrency: 10, limits: '  users: { alice: { requests_per_minute: 2 } }' });
    const alice = await stack.token('alice', ['voice']);
    for (let i = 0; i < 2; i++) expect((await (await speak(stack, alice)).arrayBuffer()).byteLength).toBeGreaterThan(0);
    const refused = await speak(stack, alice);
    expect(refused.status).toBe(429);
    const seconds = Number(refused.headers.get('retry-after'));
    expect(seconds).toBeGreaterThan(50);
    expect(seconds).toBeLessThanOrEqual(60);
    expect(((await refused.json()) as LimitBody).error).toMatchObject({ code: 'user_limit_exceeded', limit: 'requests_per_minute', retry_after_seconds: seconds });
    expect(ttsRequestsSeen(stack.sim)).toBe(2);
  });
});
