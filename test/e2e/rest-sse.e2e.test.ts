/**
 * Lightning over REST and SSE through the edge with real clients (undici, curl), the real decision
 * from examples/voicegate.yaml and the simulator, in both authz modes.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTHZ_MODES, startStack, type Stack } from './stack.ts';
import { parseSse, parseWav, ResponseLedger, upstreamRequestsContaining } from './wire.ts';

const run = promisify(execFile);
const TTS = '/smallest/waves/v1/lightning-v3.1/get_speech';
const SSE = '/smallest/waves/v1/lightning-v3.1/stream';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The simulator speaks 16 characters per second at speed 1 (shared/smallest-api.md: ~2.7 s per 45 chars). */
const CHARS_PER_SECOND = 16;

describe.each(AUTHZ_MODES)('REST and SSE through the edge (authz %s)', (mode) => {
  let stack: Stack;
  const ledger = new ResponseLedger();

  beforeAll(async () => {
    stack = await startStack(mode);
  });
  afterAll(async () => {
    await stack?.close();
  });

  const json = (token: string | undefined, extra: Record<string, string> = {}) => ({
    'content-type': 'application/json',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    ...extra,
  });

  it.each([
    { text: 'Hello from the embedded edge, through the gateway.', speed: 1 },
    { text: 'A longer sentence, so that the audio it yields lasts for a good deal more than five seconds.', speed: 1 },
    { text: 'Twice as fast, half as long.', speed: 2 },
  ])('returns a valid WAV whose duration follows the text ($text.length chars, speed $speed)', async ({ text, speed }) => {
    const res = await fetch(`${stack.edge.url}${TTS}`, {
      method: 'POST',
      headers: json(stack.tokens.alice),
      body: JSON.stringify({ text, voice_id: 'magnus', output_format: 'wav', sample_rate: 16000, speed }),
    });
    const body = Buffer.from(await res.arrayBuffer());
    ledger.add(`wav ${text.length}`, res.headers, body);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('audio/wav');
    const wav = parseWav(body);
    expect(wav).toMatchObject({ format: 1, channels: 1, sampleRate: 16000, bitsPerSample: 16 });
    expect(wav.seconds).toBeCloseTo(text.length / CHARS_PER_SECOND / speed, 1);
  });

  it('delivers the first SSE event long before the stream ends, in many separate chunks', async () => {
    // ~20 s of audio: the simulator (20× real time) produces it over about a second.
    const text = 'The gateway must forward each event the moment the provider sends it. '.repeat(5).slice(0, 320);
    const started = performance.now();
    const res = await fetch(`${stack.edge.url}${SSE}`, {
      method: 'POST',
      headers: json(stack.tokens.alice),
      body: JSON.stringify({ text, voice_id: 'magnus', sample_rate: 8000 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const decoder = new TextDecoder();
    let raw = '';
    let firstEventAt: number | undefined;
    let reads = 0;
    for await (const chunk of res.body!) {
      reads++;
      raw += decoder.decode(chunk, { stream: true });
      if (firstEventAt === undefined && raw.includes('\n\n')) firstEventAt = performance.now() - started;
    }
    const endedAt = performance.now() - started;
    ledger.add('sse fetch', res.headers, raw);
    const frames = parseSse(raw);
    expect(frames.length).toBeGreaterThan(100);
    expect(frames.at(-1)).toEqual({ event: undefined, data: { status: '200', done: true } });
    expect(frames.slice(0, -1).every((f) => f.event === 'audio' && f.data.done === false && f.data.status === '206')).toBe(true);
    // Ordering, not timing: a buffering proxy would deliver the first event together with the last.
    expect(firstEventAt).toBeDefined();
    expect(firstEventAt!).toBeLessThan(endedAt / 2);
    expect(reads).toBeGreaterThan(5);
  });

  it('streams SSE to curl -N: audio events, then the final done frame', async () => {
    const { stdout } = await run(
      'curl',
      [
        '-N', '-sS', '--fail-with-body', '-D', '-',
        '-H', `Authorization: Bearer ${stack.tokens.alice}`,
        '-H', 'Content-Type: application/json',
        '-d', JSON.stringify({ text: 'Streaming through the gateway to curl.', voice_id: 'magnus', sample_rate: 16000 }),
        `${stack.edge.url}${SSE}`,
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    ledger.add('sse curl', undefined, stdout);
    const split = stdout.indexOf('\r\n\r\n');
    const head = stdout.slice(0, split);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(head.toLowerCase()).toContain('content-type: text/event-stream');
    const frames = parseSse(stdout.slice(split + 4));
    const audio = frames.filter((f) => f.event === 'audio');
    expect(audio.length).toBeGreaterThan(1);
    expect(audio.every((f) => typeof f.data.audio === 'string' && f.data.audio.length > 0)).toBe(true);
    expect(frames.at(-1)).toEqual({ event: undefined, data: { status: '200', done: true } });
  });

  it('passes tracing and SDK headers up and the provider ids back down', async () => {
    const requestId = `e2e-${mode}-${Date.now()}`;
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await fetch(`${stack.edge.url}${TTS}`, {
      method: 'POST',
      headers: json(stack.tokens.alice, {
        'x-source': 'python-sdk',
        'x-fern-language': 'Python',
        'x-fern-sdk-name': 'smallestai',
        'x-fern-sdk-version': '5.0.0',
        traceparent,
        'x-request-id': requestId,
      }),
      body: JSON.stringify({ text: 'Headers both ways.', voice_id: 'magnus', request_id: 'ext-req-7', session_id: 'ext-sess-7' }),
    });
    const body = Buffer.from(await res.arrayBuffer());
    ledger.add('headers', res.headers, body);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-external-request-id')).toBe('ext-req-7');
    expect(res.headers.get('x-external-session-id')).toBe('ext-sess-7');
    expect(res.headers.get('x-request-id')).toMatch(UUID);
    expect(res.headers.get('x-session-id')).toMatch(UUID);

    const seen = stack.sim.requests().filter((r) => r.headers['x-request-id'] === requestId);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe('/waves/v1/lightning-v3.1/get_speech');
    expect(seen[0]!.headers).toMatchObject({
      'x-source': 'python-sdk',
      'x-fern-language': 'Python',
      'x-fern-sdk-name': 'smallestai',
      'x-fern-sdk-version': '5.0.0',
      traceparent,
      authorization: `Bearer ${stack.keys.tts}`,
    });
  });

  it.each([
    { name: '401 without a token', status: 401, path: TTS, token: 'none' },
    { name: '403 for bob on lightning (pulse only)', status: 403, path: TTS, token: 'bob' },
    { name: '403 for mallory (no entitlement)', status: 403, path: SSE, token: 'mallory' },
    { name: '404 for an unknown model', status: 404, path: '/smallest/waves/v1/lightning-v9/get_speech', token: 'alice' },
  ] as const)('denies $name before the simulator sees anything', async ({ status, path, token }) => {
    const before = stack.sim.requests().length;
    const res = await fetch(`${stack.edge.url}${path}`, {
      method: 'POST',
      headers: json(token === 'none' ? undefined : stack.tokens[token]),
      body: JSON.stringify({ text: 'Denied.', voice_id: 'magnus' }),
    });
    const text = await res.text();
    ledger.add(`deny ${status}`, res.headers, text);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    expect(body.error.code).toMatch(/^[a-z_]+$/);
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(stack.sim.requests().length).toBe(before);
  });

  it('never showed a provider key to a client, nor a caller token to the simulator', () => {
    expect(ledger.size).toBeGreaterThanOrEqual(9);
    expect(ledger.containing(stack.keys.tts)).toEqual([]);
    expect(ledger.containing(stack.keys.stt)).toEqual([]);
    const requests = stack.sim.requests();
    expect(requests.length).toBeGreaterThanOrEqual(5);
    // The scan can see a secret in a request: the provider key is there on every one.
    expect(upstreamRequestsContaining(requests, [stack.keys.tts])).toHaveLength(requests.length);
    expect(upstreamRequestsContaining(requests, Object.values(stack.tokens))).toEqual([]);
  });
});
