/**
 * Ambiguous query parameters through the embedded edge, with the simulator as the provider: the
 * client gets 400 ambiguous_parameter and nothing reaches the simulator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../e2e/stack.ts';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack('inproc');
});
afterAll(async () => {
  await stack?.close();
});

describe('repeated or encoded model/token parameters', () => {
  const cases: Array<[string, string, 'bearer' | 'none']> = [
    ['POST', '/smallest/waves/v1/stt?model=pulse&model=pulse-pro', 'bearer'],
    ['POST', '/smallest/waves/v1/stt?model=pulse&mod%65l=pulse-pro', 'bearer'],
    ['GET', '/smallest/waves/v1/stt/live?model=pulse&model=pulse-pro', 'bearer'],
    ['GET', '/smallest/waves/v1/pulse/get_text?%74oken=JWT', 'none'],
  ];
  for (const [method, path, auth] of cases) {
    it(`${method} ${path} → 400, nothing upstream`, async () => {
      const before = stack.sim.requests().length;
      const url = stack.edge.url + path.replace('JWT', stack.tokens.alice);
      const headers: Record<string, string> = auth === 'bearer' ? { authorization: `Bearer ${stack.tokens.alice}` } : {};
      const res = await fetch(url, { method, headers, ...(method === 'POST' ? { body: new Uint8Array(8) } : {}) });
      const body = (await res.json()) as { error: { code: string } };
      if (auth === 'none') {
        // An encoded `token` name is never the credential: no token was found.
        expect(res.status).toBe(401);
        expect(body.error.code).toBe('missing_token');
      } else {
        expect(res.status).toBe(400);
        expect(body.error.code).toBe('ambiguous_parameter');
      }
      expect(stack.sim.requests().length).toBe(before);
    });
  }
});
