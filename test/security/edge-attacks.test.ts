/**
 * The attack suite through the embedded edge, with the simulator as the provider, on raw sockets
 * (fetch and undici normalise paths and refuse malformed framing, so they cannot send these).
 * Each case asserts what the client got and that nothing of the attack reached the simulator.
 * bob is entitled to `pulse` only, so every trick aims at a TTS model with his token.
 */
import { once } from 'node:events';
import net from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, decodeProtectedHeader, decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../e2e/stack.ts';

let stack: Stack;
let port: number;
beforeAll(async () => {
  stack = await startStack('inproc');
  port = Number(new URL(stack.edge.url).port);
});
afterAll(async () => {
  await stack?.close();
});

const TTS_BODY = '{"text":"hi","voice_id":"magnus"}';

interface RawAnswer {
  /** Status of the first response on the socket, 0 when the socket closed without one. */
  readonly status: number;
  /** Everything the edge sent, headers and bodies of every response. */
  readonly text: string;
}

/** Writes `raw` on a fresh socket and collects everything until the edge closes it (or 3 s). */
async function sendRaw(raw: string | Buffer): Promise<RawAnswer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  socket.write(raw);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve();
    }, 3_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return { status: m ? Number(m[1]) : 0, text };
}

function request(method: string, target: string, headers: Record<string, string>, body = ''): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: gateway.test', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  if (body && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  }
  return `${lines.join('\r\n')}\r\nConnection: close\r\n\r\n${body}`;
}

/** Requests the simulator received while `run` ran. */
async function upstreamDuring(run: () => Promise<void>): Promise<string[]> {
  const before = stack.sim.requests().length;
  await run();
  // Give a forwarded request time to arrive before concluding that none did.
  await new Promise((r) => setTimeout(r, 50));
  return stack.sim.requests().slice(before).map((r) => `${r.method} ${r.url}`);
}

describe('path tricks aimed at a model the caller is not entitled to', () => {
  const targets = [
    '/smallest/waves/v1/pulse/../lightning-v3.1/get_speech',
    '/smallest/waves/v1/pulse/%2e%2e/lightning-v3.1/get_speech',
    '/smallest/waves/v1/pulse%2F..%2Flightning-v3.1/get_speech',
    '/smallest/waves/v1/lightning-v3.1%2Fget_speech',
    '/smallest/waves/v1/lightning%2Dv3.1/get_speech',
    '//smallest/waves/v1/lightning-v3.1/get_speech',
    '/smallest//waves/v1/lightning-v3.1/get_speech',
    '/smallest/waves/v1/lightning-v3.1/get_speech;pulse',
    '/smallest/waves/v1/./lightning-v3.1/get_speech',
    '/SMALLEST/waves/v1/lightning-v3.1/get_speech',
    '/smallest/waves/v1/lightning-v3.1/get_speech\\..\\..\\pulse\\get_text',
    'http://api.smallest.ai/smallest/waves/v1/lightning-v3.1/get_speech',
    '*',
  ];
  for (const target of targets) {
    it(`POST ${target} with bob's token is refused and never forwarded`, async () => {
      let answer: RawAnswer = { status: 0, text: '' };
      const upstream = await upstreamDuring(async () => {
        answer = await sendRaw(request('POST', target, { Authorization: `Bearer ${stack.tokens.bob}`, 'Content-Type': 'application/json' }, TTS_BODY));
      });
      expect(upstream).toEqual([]);
      // A 4xx from the edge, or Node's parser closing the socket on a target it cannot read.
      if (answer.status !== 0) expect(answer.status).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(500);
      expect(answer.text).not.toContain(stack.keys.tts);
    });
  }

  it('the same caller on the model he is entitled to is served (the suite is not refusing everything)', async () => {
    const upstream = await upstreamDuring(async () => {
      const answer = await sendRaw(request('GET', '/smallest/waves/v1/health', { Authorization: `Bearer ${stack.tokens.bob}` }));
      expect(answer.status).toBe(200);
    });
    expect(upstream).toEqual(['GET /waves/v1/health']);
  });
});

describe('request smuggling and framing', () => {
  const smuggled = request('POST', '/smallest/waves/v1/lightning-v3.1/get_speech', { Authorization: `Bearer TOKEN` }, TTS_BODY);

  const framings: Array<[string, (smuggle: string) => string]> = [
    ['Content-Length and Transfer-Encoding together', (s) =>
      `POST /smallest/waves/v1/pulse/get_text HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer BOB\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${s}`],
    ['two different Content-Length headers', (s) =>
      `POST /smallest/waves/v1/pulse/get_text HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer BOB\r\nContent-Length: 4\r\nContent-Length: ${4 + Buffer.byteLength(s)}\r\n\r\nRIFF${s}`],
    ['an obfuscated Transfer-Encoding', (s) =>
      `POST /smallest/waves/v1/pulse/get_text HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer BOB\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nRIFF${s}`],
    ['a chunk size that is not hex', (s) =>
      `POST /smallest/waves/v1/pulse/get_text HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer BOB\r\nTransfer-Encoding: chunked\r\n\r\n4g\r\nRIFF\r\n0\r\n\r\n${s}`],
    ['a bare LF line ending in the head', (s) =>
      `POST /smallest/waves/v1/pulse/get_text HTTP/1.1\nHost: g\nAuthorization: Bearer BOB\nContent-Length: 4\n\nRIFF${s}`],
  ];
  for (const [name, build] of framings) {
    it(`${name}: the smuggled TTS request never reaches the provider`, async () => {
      // The smuggled request carries bob's token too: if it were parsed as a second request it
      // would be refused, so the assertion is on what the simulator saw, not the status.
      const raw = build(smuggled.replace('TOKEN', stack.tokens.alice)).replaceAll('BOB', stack.tokens.bob);
      let answer: RawAnswer = { status: 0, text: '' };
      const upstream = await upstreamDuring(async () => {
        answer = await sendRaw(raw);
      });
      expect(upstream.filter((r) => r.includes('lightning'))).toEqual([]);
      // At most the first, well-framed part reached the provider; never a second request.
      expect(upstream.length).toBeLessThanOrEqual(1);
      expect(answer.text.match(/HTTP\/1\.1 200/g)?.length ?? 0).toBeLessThanOrEqual(1);
    });
  }
});

describe('oversized heads', () => {
  it('a header block over 16 KiB → 431 before any decision, nothing forwarded', async () => {
    let answer: RawAnswer = { status: 0, text: '' };
    const upstream = await upstreamDuring(async () => {
      answer = await sendRaw(request('POST', '/smallest/waves/v1/pulse/get_text', { Authorization: `Bearer ${stack.tokens.bob}`, 'X-Padding': 'a'.repeat(20_000) }, 'RIFF'));
    });
    expect(answer.status).toBe(431);
    expect(upstream).toEqual([]);
  });

  it('a request line over 16 KiB → refused, nothing forwarded', async () => {
    let answer: RawAnswer = { status: 0, text: '' };
    const upstream = await upstreamDuring(async () => {
      answer = await sendRaw(request('POST', `/smallest/waves/v1/pulse/get_text?x=${'a'.repeat(20_000)}`, { Authorization: `Bearer ${stack.tokens.bob}` }, 'RIFF'));
    });
    expect([0, 414, 431]).toContain(answer.status);
    expect(upstream).toEqual([]);
  });
});

describe('JWT forgeries at the edge', () => {
  async function attempt(token: string): Promise<{ status: number; body: string; upstream: string[] }> {
    let res: Response | undefined;
    let body = '';
    const upstream = await upstreamDuring(async () => {
      res = await fetch(`${stack.edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: TTS_BODY,
      });
      body = await res.text();
    });
    return { status: res!.status, body, upstream };
  }

  function b64(json: unknown): string {
    return Buffer.from(JSON.stringify(json)).toString('base64url');
  }

  it('bob rewrites his own payload to say alice, team voice: 401, nothing forwarded', async () => {
    const [h, , s] = stack.tokens.bob.split('.');
    const payload = { ...decodeJwt(stack.tokens.bob), sub: 'alice', teams: ['voice'] };
    const r = await attempt(`${h}.${b64(payload)}.${s}`);
    expect(r.status).toBe(401);
    expect(r.upstream).toEqual([]);
  });

  it('a token signed by another key under the issuer\'s kid: 401, nothing forwarded', async () => {
    const header = decodeProtectedHeader(stack.tokens.alice);
    const claims = decodeJwt(stack.tokens.alice);
    const { privateKey } = await generateKeyPair(header.alg ?? 'ES256');
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: header.alg ?? 'ES256', ...(header.kid ? { kid: header.kid } : {}) }).sign(privateKey);
    const r = await attempt(forged);
    expect(r.status).toBe(401);
    expect(r.upstream).toEqual([]);
  });

  it('a token carrying its own key (jwk header) is not trusted: 401, nothing forwarded', async () => {
    const header = decodeProtectedHeader(stack.tokens.alice);
    const alg = header.alg ?? 'ES256';
    const { privateKey, publicKey } = await generateKeyPair(alg);
    const forged = await new SignJWT(decodeJwt(stack.tokens.alice)).setProtectedHeader({ alg, jwk: await exportJWK(publicKey) }).sign(privateKey);
    const r = await attempt(forged);
    expect(r.status).toBe(401);
    expect(r.upstream).toEqual([]);
  });

  it('alg none and a stripped signature: 401, nothing forwarded, the token never echoed', async () => {
    const [, p] = stack.tokens.alice.split('.');
    for (const token of [`${b64({ alg: 'none', typ: 'JWT' })}.${p}.`, `${stack.tokens.alice.split('.').slice(0, 2).join('.')}.`]) {
      const r = await attempt(token);
      expect(r.status).toBe(401);
      expect(r.upstream).toEqual([]);
      expect(r.body).not.toContain(p);
    }
  });

  it('the genuine token is served (the forgeries fail for their forgery, not for the route)', async () => {
    const r = await attempt(stack.tokens.alice);
    expect(r.status).toBe(200);
    expect(r.upstream).toEqual(['POST /waves/v1/lightning-v3.1/get_speech']);
  });
});

describe('bodies that could be read two ways', () => {
  const utf16 = Buffer.from('\ufeff{"text":"hi","model":"lightning-v3.1-pro"}', 'utf16le');
  const cases: Array<[string, string, Record<string, string>, string | Buffer, number, string]> = [
    ['a doubled "model" key', '/smallest/waves/v1/tts', {}, '{"text":"hi","model":"lightning-v3.1","model":"lightning-v3.1-pro"}', 400, 'ambiguous_parameter'],
    ['a doubled key spelled with an escape', '/smallest/waves/v1/tts', {}, '{"text":"hi","model":"lightning-v3.1","mod\\u0065l":"lightning-v3.1-pro"}', 400, 'ambiguous_parameter'],
    ['a gzip-encoded body', '/smallest/waves/v1/tts', { 'content-encoding': 'gzip' }, '{"text":"hi"}', 415, 'unsupported_content_encoding'],
    ['a UTF-16 body', '/smallest/waves/v1/tts', {}, utf16, 400, 'invalid_body'],
    ['a path model with another body model', '/smallest/waves/v1/lightning-v3.1/get_speech', {}, '{"text":"hi","model":"lightning-v3.1-pro"}', 400, 'model_conflict'],
  ];
  for (const [name, path, headers, body, status, code] of cases) {
    it(`${name} → ${status} ${code}, nothing forwarded`, async () => {
      let got: { status: number; code: string } = { status: 0, code: '' };
      const upstream = await upstreamDuring(async () => {
        const res = await fetch(`${stack.edge.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.tokens.alice}`, 'content-type': 'application/json', ...headers },
          body,
        });
        got = { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
      });
      expect(got).toEqual({ status, code });
      expect(upstream).toEqual([]);
    });
  }
});
