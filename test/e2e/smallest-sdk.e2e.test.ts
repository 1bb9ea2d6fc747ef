/**
 * The npm `smallestai@1.0.1` SDK pointed at the gateway. Its Lightning routes are for retired
 * models (`/api/v1/lightning/get_speech`, `/api/v1/lightning-large/get_speech`); the example config
 * registers them so the provider's 410 MODEL_DEPRECATED answer reaches the SDK intact.
 */
import { Configuration, WavesClient } from 'smallestai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AUTHZ_MODES, startStack, type Stack } from './stack.ts';
import { ResponseLedger, upstreamRequestsContaining } from './wire.ts';

/** The SDK's constructor prints `SMALLEST_API_KEY` to stdout; keep it out of the test output. */
function quietClient(basePath: string, accessToken: string): WavesClient {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  try {
    return new WavesClient(new Configuration({ basePath, accessToken }));
  } finally {
    log.mockRestore();
  }
}

interface Caught {
  status: number;
  headers: Record<string, unknown>;
  body: Buffer;
}

/** The HTTP answer an axios error carries (axios is the SDK's own dependency, not ours). */
function responseOf(err: unknown): { status: number; headers: Record<string, unknown>; data: unknown } | undefined {
  const res = (err as { response?: unknown } | undefined)?.response as { status?: unknown; headers?: unknown; data?: unknown } | undefined;
  if (typeof res?.status !== 'number' || typeof res.headers !== 'object' || res.headers === null) return undefined;
  return { status: res.status, headers: { ...(res.headers as Record<string, unknown>) }, data: res.data };
}

/** Runs an SDK call that must fail and returns the HTTP answer the SDK surfaced. */
async function sdkFailure(call: () => Promise<unknown>): Promise<Caught> {
  try {
    await call();
  } catch (err) {
    const res = responseOf(err);
    if (!res) throw err;
    // The SDK asks axios for an arraybuffer, which Node's adapter hands back as a Buffer.
    const body = typeof res.data === 'string' ? Buffer.from(res.data) : Buffer.from(res.data as ArrayBuffer);
    return { status: res.status, headers: res.headers, body };
  }
  throw new Error('the SDK call succeeded');
}

describe.each(AUTHZ_MODES)('npm smallestai@1.0.1 through the gateway (authz %s)', (mode) => {
  let stack: Stack;
  let client: WavesClient;
  const ledger = new ResponseLedger();

  beforeAll(async () => {
    stack = await startStack(mode);
    // The SDK appends `/api/v1/<model>/get_speech` to basePath; the gateway adds its `/smallest` prefix.
    client = quietClient(`${stack.edge.url}/smallest`, stack.tokens.alice);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it.each(['lightning', 'lightning-large'] as const)("synthesize('%s') gets the provider's 410 MODEL_DEPRECATED intact", async (route) => {
    const before = stack.sim.requests().length;
    const failure = await sdkFailure(() =>
      client.synthesize(route, { text: 'Hello from an old SDK.', voice_id: 'emily', sample_rate: 24000, add_wav_header: true }),
    );
    ledger.add(`sdk ${route}`, failure.headers, failure.body);
    expect(failure.status).toBe(410);
    const body = JSON.parse(failure.body.toString('utf8')) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'error', error_code: 'MODEL_DEPRECATED' });
    expect(String(body['recommended_endpoint'])).toContain('lightning-v3.1');

    const seen = stack.sim.requests().slice(before);
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([`POST /waves/v1/${route}/get_speech`]);
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${stack.keys.tts}`);

    // Byte for byte what the provider says when asked directly.
    const direct = await request(`${stack.sim.url}/waves/v1/${route}/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.keys.tts}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Hello from an old SDK.', voice_id: 'emily' }),
    });
    expect(direct.statusCode).toBe(410);
    expect(failure.body.equals(Buffer.from(await direct.body.arrayBuffer()))).toBe(true);
    expect(failure.headers['content-type']).toBe(direct.headers['content-type']);
  });

  it('surfaces a gateway denial to the SDK as an HTTP error with a JSON body', async () => {
    const bob = quietClient(`${stack.edge.url}/smallest`, stack.tokens.bob);
    const before = stack.sim.requests().length;
    const failure = await sdkFailure(() => bob.synthesize('lightning', { text: 'Not for bob.', voice_id: 'emily' }));
    ledger.add('sdk deny', failure.headers, failure.body);
    expect(failure.status).toBe(403);
    expect((JSON.parse(failure.body.toString('utf8')) as { error: { code: string } }).error.code).toMatch(/^[a-z_]+$/);
    expect(stack.sim.requests().length).toBe(before);
  });

  it('never showed a provider key to the SDK, nor its token to the simulator', () => {
    expect(ledger.size).toBe(3);
    expect(ledger.containing(stack.keys.tts)).toEqual([]);
    expect(ledger.containing(stack.keys.stt)).toEqual([]);
    expect(upstreamRequestsContaining(stack.sim.requests(), Object.values(stack.tokens))).toEqual([]);
  });
});
