/**
 * `voicegate start` as a user runs it: a child process on ephemeral ports, whose printed banner is
 * followed to the letter — the exported token, the curl lines, the WebSocket one-liner, the token
 * command for another user, the control plane's three steps (account, collaborator, model) with
 * curl and with the CLI — then Ctrl-C (SIGINT) stops it with exit code 0; a second start on the
 * same data dir keeps what the first one stored and prints no administrator key.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
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

/** A `voicegate start` child process and what it printed. */
interface Started {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: string;
  stderr: string;
}

describe('voicegate start, followed as printed', () => {
  let dir: string;
  let child: ChildProcess;
  let stdout = '';
  let stderr = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let env: NodeJS.ProcessEnv;
  let keys: { tts: string; stt: string };
  let startArgs: string[];
  let second: Started | undefined;

  /** Starts `voicegate start` and waits for its banner (PGlite's first start takes seconds). */
  async function launch(): Promise<Started> {
    const { NATS_URL: _n, DATABASE_URL: _d, VOICEGATE_KEK: _k, ...rest } = process.env;
    const c = spawn(process.execPath, startArgs, { cwd: REPO_ROOT, env: rest, stdio: ['ignore', 'pipe', 'pipe'] });
    const started: Started = { child: c, exited: new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal }))), stdout: '', stderr: '' };
    c.stdout!.setEncoding('utf8').on('data', (s: string) => (started.stdout += s));
    c.stderr!.setEncoding('utf8').on('data', (s: string) => (started.stderr += s));
    await until(() => started.stdout.includes('Press Ctrl-C to stop.') || c.exitCode !== null, 90_000, 'the banner');
    if (c.exitCode !== null) throw new Error(`voicegate start exited ${c.exitCode}:\n${started.stderr}`);
    return started;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'voicegate-e2e-'));
    // The config is the example with its upstream on a port we know is free; the bundled simulator takes it.
    await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
    // The printed `node bin/voicegate.js …` lines run from a folder with bin/ in it; the WAV they
    // write lands in this temporary folder, not in the repository.
    await symlink(join(REPO_ROOT, 'bin'), join(dir, 'bin'));
    const upstream = `http://127.0.0.1:${await freePort()}`;
    await writeFile(join(dir, 'voicegate.yaml'), await exampleConfigText(upstream));
    keys = providerKeys(await exampleSnapshot(upstream));

    // Its own control store (PGlite) and development KEK under the temporary folder.
    startArgs = ['bin/voicegate.js', 'start', '--config', join(dir, 'voicegate.yaml'), '--port', '0', '--grpc-port', '0', '--http-port', '0', '--admin-port', '0', '--spool-dir', join(dir, 'spool'), '--data-dir', join(dir, 'control')];
    const first = await launch();
    child = first.child;
    exited = first.exited;
    const token = /export VG_TOKEN=(\S+)/.exec(first.stdout)?.[1];
    if (!token) throw new Error(`no token in the banner:\n${first.stdout}`);
    env = { ...process.env, VG_TOKEN: token };
    // What it prints from now on is appended too (the Ctrl-C test reads the whole output).
    stdout = first.stdout;
    stderr = first.stderr;
    child.stdout!.on('data', (s: string) => (stdout += s));
    child.stderr!.on('data', (s: string) => (stderr += s));
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (second && second.child.exitCode === null && second.child.signalCode === null) {
      second.child.kill('SIGKILL');
      await second.exited;
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

  it('runs the printed admin API curl lines (account, collaborator, model); carol then passes through the new account', { timeout: 120_000 }, async () => {
    const adminKey = /export VG_ADMIN_KEY=(vg_\S+)/.exec(stdout)?.[1];
    expect(adminKey).toBeDefined();
    const carol = block(stdout, 'Then carol');
    const shell = { cwd: dir, env: { ...process.env, VG_ADMIN_KEY: adminKey }, timeout: 20_000, encoding: 'utf8' as const };
    // Before the three steps carol is nobody's collaborator.
    expect((await run('sh', ['-c', carol], shell)).stdout.trim()).toBe('403');

    const steps = block(stdout, 'Add an account');
    expect(steps.split('\n').filter((l) => l.trim().startsWith('curl '))).toHaveLength(3);
    const { stdout: answers } = await run('sh', ['-c', steps], shell);
    const [account, collaborator, model] = answers.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(account).toMatchObject({ name: 'my-smallest', concurrency_units: 2, secret: { set: true, last4: '0001' } });
    expect(answers).not.toContain('sim-key-my-smallest');
    expect(collaborator).toMatchObject({ subject: 'user:carol', role: 'user' });
    expect(model).toMatchObject({ model_id: 'lightning-v3.1', type: 'tts' });

    // An admin write answers once the edge decides with it: the very next request passes.
    expect((await run('sh', ['-c', carol], shell)).stdout.trim()).toBe('200');
    const wav = parseWav(await readFile(join(dir, 'carol.wav')));
    expect(wav).toMatchObject({ channels: 1, bitsPerSample: 16 });
  });

  it('runs the printed CLI lines, which find the same three resources already there', { timeout: 120_000 }, async () => {
    const adminKey = /export VG_ADMIN_KEY=(vg_\S+)/.exec(stdout)![1]!;
    const cli = block(stdout, 'The same with the CLI');
    const { stdout: out } = await run('sh', ['-c', `set -e\n${cli}`], { cwd: dir, env: { ...process.env, VG_ADMIN_KEY: adminKey }, timeout: 60_000, encoding: 'utf8' });
    expect(out).toContain('my-smallest');
    expect(out).not.toContain('sim-key-my-smallest');
  });

  it('stops with exit code 0 on Ctrl-C, having logged no provider key', async () => {
    child.kill('SIGINT');
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 8_000).unref());
    expect(await Promise.race([exited, timeout])).toEqual({ code: 0, signal: null });
    expect(`${stdout}\n${stderr}`).not.toContain(keys.tts);
    expect(`${stdout}\n${stderr}`).not.toContain(keys.stt);
    // The demo key appears once: in the printed commands, never in a log line.
    expect(stderr).not.toContain('sim-key-my-smallest');
    expect(stdout.split('sim-key-my-smallest').length - 1).toBe(2);
  });

  it('a second start on the same data dir keeps the store, prints no key, and says where accounts come from', { timeout: 120_000 }, async () => {
    second = await launch();
    const out = second.stdout;
    expect(out).not.toMatch(/VG_ADMIN_KEY=vg_/);
    expect(out).toMatch(/Accounts and models come from the control store \(PGlite .*control\), not from .*voicegate\.yaml; `voicegate apply -f FILE`/);
    // The account the first run added is there at once, key included (the simulator accepts it).
    const shell = { cwd: dir, env: { ...process.env }, timeout: 20_000, encoding: 'utf8' as const };
    expect((await run('sh', ['-c', block(out, 'Then carol')], shell)).stdout.trim()).toBe('200');
    // The printed development administrator token works where the lost key would have.
    const devAdmin = block(out, 'VG_ADMIN_KEY below');
    const steps = block(out, 'Add an account');
    const { stdout: answers } = await run('sh', ['-c', `${devAdmin}\n${steps}`], shell);
    expect(answers.trim().split('\n').map((l) => Object.keys(JSON.parse(l) as object).length > 0)).toEqual([true, true, true]);
    second.child.kill('SIGINT');
    expect(await second.exited).toEqual({ code: 0, signal: null });
  });
});
