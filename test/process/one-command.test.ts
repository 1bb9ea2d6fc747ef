/**
 * `voicegate start` as a user runs it: a child process on ephemeral ports, whose printed banner is
 * followed to the letter — the exported token, the curl lines, the WebSocket one-liner, the token
 * command for another user — then Ctrl-C (SIGINT) stops it with exit code 0.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../edge/helpers.ts';
import { EXAMPLES_DIR, exampleConfigText, exampleSnapshot, providerKeys, REPO_ROOT } from '../e2e/stack.ts';
import { parseSse, parseWav } from '../e2e/wire.ts';

const run = promisify(execFile);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** The command block printed under `heading`: its lines up to the next blank one, continuations kept. */
function block(banner: string, heading: string): string {
  const lines = banner.split('\n');
  const at = lines.findIndex((l) => l.startsWith(heading));
  if (at === -1) throw new Error(`banner has no "${heading}" section:\n${banner}`);
  const end = lines.indexOf('', at + 1);
  return lines.slice(at + 1, end === -1 ? undefined : end).join('\n').trim();
}

describe('voicegate start, followed as printed', () => {
  let dir: string;
  let child: ChildProcess;
  let stdout = '';
  let stderr = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let env: NodeJS.ProcessEnv;
  let keys: { tts: string; stt: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'voicegate-e2e-'));
    // The config is the example with its upstream on a port we know is free; the bundled simulator takes it.
    await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
    const upstream = `http://127.0.0.1:${await freePort()}`;
    await writeFile(join(dir, 'voicegate.yaml'), await exampleConfigText(upstream));
    keys = providerKeys(await exampleSnapshot(upstream));

    const { NATS_URL: _n, DATABASE_URL: _d, ...rest } = process.env;
    child = spawn(
      process.execPath,
      ['bin/voicegate.js', 'start', '--config', join(dir, 'voicegate.yaml'), '--port', '0', '--grpc-port', '0', '--http-port', '0', '--spool-dir', join(dir, 'spool')],
      { cwd: REPO_ROOT, env: rest, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    await until(() => stdout.includes('Press Ctrl-C to stop.') || child.exitCode !== null, 20_000, 'the banner');
    if (child.exitCode !== null) throw new Error(`voicegate start exited ${child.exitCode}:\n${stderr}`);
    const token = /export VG_TOKEN=(\S+)/.exec(stdout)?.[1];
    if (!token) throw new Error(`no token in the banner:\n${stdout}`);
    env = { ...process.env, VG_TOKEN: token };
  }, 30_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints the real ports and a token for alice', async () => {
    const edge = /gateway \(edge\)\s+(http:\/\/127\.0\.0\.1:(\d+))/.exec(stdout);
    expect(edge).not.toBeNull();
    expect(Number(edge![2])).toBeGreaterThan(0);
    const ports = [...stdout.slice(stdout.indexOf('voicegate is running')).matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    expect(ports.length).toBeGreaterThanOrEqual(5);
    expect(ports.filter((p) => p === 0)).toEqual([]);
    expect(decodeJwt(env['VG_TOKEN']!)).toMatchObject({ sub: 'alice', teams: ['voice'] });
    const metrics = /metrics & usage\s+(\S+)/.exec(stdout)![1]!;
    const res = await fetch(metrics);
    expect(res.status).toBe(200);
    await res.text();
  });

  it('runs the printed TTS curl line and writes a valid WAV', async () => {
    const line = block(stdout, 'Text to speech');
    expect(line).toMatch(/^curl /);
    await run('sh', ['-c', line], { cwd: dir, env, timeout: 10_000 });
    const wav = parseWav(await readFile(join(dir, 'hello.wav')));
    expect(wav).toMatchObject({ channels: 1, bitsPerSample: 16 });
    // "Hello from voicegate": 20 characters at 16 per second.
    expect(wav.seconds).toBeCloseTo(20 / 16, 1);
  });

  it('runs the printed SSE curl line and receives audio events and the done frame', async () => {
    const line = block(stdout, 'Streaming text to speech');
    expect(line).toMatch(/^curl -N /);
    const { stdout: sse } = await run('sh', ['-c', line], { cwd: dir, env, timeout: 10_000, encoding: 'utf8' });
    expect(sse).not.toContain(keys.tts);
    const frames = parseSse(sse);
    expect(frames.filter((f) => f.event === 'audio').length).toBeGreaterThan(0);
    expect(frames.at(-1)).toEqual({ event: undefined, data: { status: '200', done: true } });
  });

  it('runs the printed WebSocket one-liner, which ends with complete', async () => {
    const line = block(stdout, 'WebSocket text to speech');
    expect(line).toMatch(/^node -e /);
    // From the repo root, where `ws` resolves, as a user of a fresh clone runs it.
    const { stdout: out } = await run('sh', ['-c', line], { cwd: REPO_ROOT, env, timeout: 10_000, encoding: 'utf8' });
    const statuses = out.trim().split('\n');
    expect(statuses.length).toBeGreaterThan(1);
    expect(statuses.slice(0, -1).every((s) => s === 'chunk')).toBe(true);
    expect(statuses.at(-1)).toBe('complete');
  });

  it("runs the printed token command for bob, whom the gateway then refuses Lightning", async () => {
    const line = block(stdout, 'A token for another user');
    const { stdout: printed } = await run('sh', ['-c', line], { cwd: REPO_ROOT, env, timeout: 15_000, encoding: 'utf8' });
    const bob = printed.trim();
    expect(decodeJwt(bob)).toMatchObject({ sub: 'bob' });
    const edge = /gateway \(edge\)\s+(\S+)/.exec(stdout)![1]!;
    const res = await fetch(`${edge}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Not for bob.', voice_id: 'magnus' }),
    });
    expect(res.status).toBe(403);
    await res.text();
  });

  it('shows the traffic above on /metrics, by endpoint and decision, without user names', async () => {
    const metrics = await (await fetch(/metrics & usage\s+(\S+)/.exec(stdout)![1]!)).text();
    const count = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 0);
    expect(count(/voicegate_edge_requests_total\{[^}]*endpoint="tts\.sync"[^}]*decision="allow"[^}]*status_class="2xx"\} (\d+)/)).toBeGreaterThanOrEqual(1);
    expect(count(/voicegate_edge_requests_total\{[^}]*decision="deny"[^}]*status_class="4xx"\} (\d+)/)).toBeGreaterThanOrEqual(1);
    expect(metrics).toContain('voicegate_edge_upstream_first_byte_seconds_bucket');
    expect(metrics).not.toMatch(/"(alice|bob)"/);
  });

  it('stops with exit code 0 on Ctrl-C, having logged no provider key', async () => {
    child.kill('SIGINT');
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 8_000).unref());
    expect(await Promise.race([exited, timeout])).toEqual({ code: 0, signal: null });
    expect(`${stdout}\n${stderr}`).not.toContain(keys.tts);
    expect(`${stdout}\n${stderr}`).not.toContain(keys.stt);
  });
});
