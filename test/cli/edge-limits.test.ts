/**
 * Issue 9 point 14: the edge's bounds are flags of `voicegate edge` and `voicegate start`, shown
 * with their defaults in `--help`, and each one changes what a client sees. `main()` runs in
 * process in front of the simulator, configured from examples/voicegate.yaml.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { main } from '../../extproc/main/main.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { devTokens, exampleConfigText, exampleSnapshot, EXAMPLES_DIR, providerKeys, type Tokens } from '../e2e/stack.ts';

const QUIET = { ...process.env, LOG_LEVEL: 'silent', NATS_URL: '' };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Running {
  port: number;
  stop(): Promise<number>;
}

let dir: string;
let config: string;
let sim: SimulatorHandle;
let tokens: Tokens;
const running: Running[] = [];

/** `voicegate <command> … <flags>` in process; resolves once its edge answers /healthz. */
async function run(command: 'edge' | 'start', flags: string[]): Promise<Running> {
  const port = await freePort();
  const ac = new AbortController();
  let stderr = '';
  const args =
    command === 'edge'
      ? ['edge', '--config', config, '--host', '127.0.0.1', '--port', String(port), '--http-port', '0', '--spool-dir', join(dir, `e${port}`), ...flags]
      : ['start', '--config', config, '--simulator', 'off', '--port', String(port), '--grpc-port', '0', '--http-port', '0', '--spool-dir', join(dir, `s${port}`), '--control', 'off', ...flags];
  const code = main(args, ac.signal, { env: QUIET, stdout: () => {}, stderr: (s) => (stderr += s) });
  for (let i = 0; ; i++) {
    const ok = await healthy(port);
    if (ok) break;
    if (i > 200) throw new Error(`${command} never answered: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const r = { port, stop: () => (ac.abort(), code) };
  running.push(r);
  return r;
}

/** GET /healthz on a connection of its own, closed after (fetch would keep one open, and count). */
function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).once('error', () => resolve(false));
  });
}

function wsTo(port: number): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${port}/smallest/waves/v1/lightning-v3.1/get_speech/stream`, { headers: { authorization: `Bearer ${tokens.alice}` } });
}

/** Opens a session, sends one text frame of `bytes` bytes and reports how the session ends. */
async function sendFrame(port: number, bytes: number): Promise<{ code: number; relayed: boolean }> {
  const marker = `m${Math.random().toString(36).slice(2)}`;
  const frame = JSON.stringify({ text: marker, voice_id: 'magnus', pad: '' });
  const payload = JSON.stringify({ text: marker, voice_id: 'magnus', pad: 'x'.repeat(bytes - frame.length) });
  expect(Buffer.byteLength(payload)).toBe(bytes);
  const ws = wsTo(port);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  ws.send(payload);
  // An accepted frame is answered by the simulator; then we end the session ourselves.
  const answered = new Promise<void>((r) => ws.once('message', () => r()));
  const first = await Promise.race([closed, answered.then(() => 'answered' as const)]);
  if (first === 'answered') ws.close(1000);
  const code = await closed;
  return { code, relayed: sim.frames().some((f) => f.text.includes(marker)) };
}

/** A raw TCP connection to the edge, resolved once connected. */
function socketTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with what the server sent before closing, or 'open' if it is still open after `ms`. */
function closesWithin(s: Socket, ms: number): Promise<string | 'open'> {
  let got = '';
  s.on('data', (b: Buffer) => (got += b.toString()));
  s.on('error', () => {});
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('open'), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(got);
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-edge-limits-'));
  const probe = await exampleSnapshot('http://127.0.0.1:1');
  const keys = providerKeys(probe);
  tokens = await devTokens(probe);
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 8 }, { key: keys.stt, units: 8 }] });
  await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
  config = join(dir, 'voicegate.yaml');
  await writeFile(config, await exampleConfigText(sim.url));
});

afterAll(async () => {
  for (const r of running) expect(await r.stop()).toBe(0);
  await sim.close();
  await rm(dir, { recursive: true, force: true });
});

describe('--help', () => {
  it.each(['edge', 'start'])('%s lists every limit with its default', async (command) => {
    let out = '';
    expect(await main([command, '--help'], new AbortController().signal, { env: {}, stdout: (s) => (out += s), stderr: () => {} })).toBe(0);
    expect(out).toMatch(/--headers-timeout MS .*\(default 10000\)/);
    expect(out).toMatch(/--decision-body-timeout MS .*\(default 10000\)/);
    expect(out).toMatch(/--max-connections N .*\(default 1024\)/);
    expect(out).toMatch(/--max-ws-payload BYTES .*\(default 16777216\)/);
    expect(out).toMatch(/--spool-max-bytes BYTES .*\(default 268435456\)/);
    expect(out).toMatch(/--span-file-max-bytes BYTES .*\(default 67108864\)/);
    expect(out).toMatch(/--span-file-keep N .*\(default 5\)/);
  });

  it('a limit that would switch the bound off is refused with exit 2', async () => {
    for (const bad of [['--max-connections', '0'], ['--headers-timeout', '0'], ['--max-ws-payload', '16MB']]) {
      let err = '';
      const code = await main(['edge', '--config', 'examples/voicegate.yaml', ...bad], new AbortController().signal, { env: {}, stdout: () => {}, stderr: (s) => (err += s) });
      expect(code, bad.join(' ')).toBe(2);
      expect(err).toContain(bad[0]);
    }
  });
});

describe('voicegate edge with its limits set', () => {
  it('--max-ws-payload 1024: a 2 KiB frame closes the session with 1009 and never reaches the provider; 1,000 bytes pass', async () => {
    const edge = await run('edge', ['--max-ws-payload', '1KiB']);
    expect(await sendFrame(edge.port, 2048)).toEqual({ code: 1009, relayed: false });
    // Relayed; the provider's audio answer is itself over 1 KiB, so that leg then closes with 1009 too.
    expect(await sendFrame(edge.port, 1000)).toMatchObject({ relayed: true });
  });

  it('by default the same 2 KiB frame is relayed', async () => {
    const edge = await run('edge', []);
    expect(await sendFrame(edge.port, 2048)).toEqual({ code: 1000, relayed: true });
  });

  it('--max-connections 2: a third connection is closed unanswered; once one leaves, a new one is served', async () => {
    const edge = await run('edge', ['--max-connections', '2']);
    const a = await socketTo(edge.port);
    const b = await socketTo(edge.port);
    // Both are accepted (and answered) before the third arrives.
    for (const s of [a, b]) {
      const got = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
      s.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
      expect(await got).toMatch(/^HTTP\/1\.1 200/);
    }
    const c = await socketTo(edge.port);
    const third = closesWithin(c, 3000);
    c.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(await third).toBe('');
    a.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const d = await socketTo(edge.port);
    const fourth = closesWithin(d, 1000);
    d.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    expect(await fourth).toMatch(/^HTTP\/1\.1 200/);
    b.destroy();
  });

  it('--headers-timeout 300ms: a request head still incomplete after it is cut off (default: 10 s)', async () => {
    const edge = await run('edge', ['--headers-timeout', '300ms']);
    const s = await socketTo(edge.port);
    const started = Date.now();
    const result = closesWithin(s, 5000);
    s.write('GET /healthz HTTP/1.1\r\nhost: x\r\n'); // no blank line: the head never ends
    expect(await result).not.toBe('open');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('--decision-body-timeout 300ms: a body the decision waits for answers 408 request_timeout, nothing reaches the provider', async () => {
    const edge = await run('edge', ['--decision-body-timeout', '300ms']);
    const s = await socketTo(edge.port);
    const before = sim.requests().length;
    const result = closesWithin(s, 5000);
    const started = Date.now();
    s.write(`POST /smallest/waves/v1/tts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${tokens.alice}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{"text":"hi",`);
    const got = await result;
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    expect(got).toContain('"request_timeout"');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(sim.requests().length).toBe(before);
  });
});

describe('voicegate start takes the same limits', () => {
  it('--max-ws-payload 1024 closes a 2 KiB frame with 1009', async () => {
    const start = await run('start', ['--max-ws-payload', '1024']);
    expect(await sendFrame(start.port, 2048)).toEqual({ code: 1009, relayed: false });
  });
});
