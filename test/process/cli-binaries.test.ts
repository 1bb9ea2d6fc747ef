/**
 * The executables themselves, spawned: what was hanging now exits, and the simulator runs as its
 * own program and through the development wiring, stopping on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a bin script; `onOutput` may stop it. Killed (code null) if still running after 20 s. */
function spawnBin(bin: string, args: string[], env: NodeJS.ProcessEnv, onOutput?: (out: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Exit> {
  const started = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin', bin), ...args], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let signalled = false;
  const kill = (s: NodeJS.Signals) => {
    if (!signalled) child.kill(s);
    signalled = true;
  };
  child.stdout.on('data', (b: Buffer) => ((stdout += b.toString()), onOutput?.(stdout + stderr, kill)));
  child.stderr.on('data', (b: Buffer) => ((stderr += b.toString()), onOutput?.(stdout + stderr, kill)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((done) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

let busy: Server;
let busyPort: number;

beforeAll(async () => {
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => busy.close(() => r())));

describe('bin/voicegate.js', () => {
  it('edge on a busy port exits 1 with one line instead of hanging', async () => {
    const r = await spawnBin('voicegate.js', ['edge', '--config', 'examples/voicegate.yaml', '--host', '127.0.0.1', '--port', String(busyPort), '--http-port', '0', '--spool-dir', join(tmpdir(), 'vg-busy-edge')], { NATS_URL: '' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(`voicegate edge: port ${busyPort} (edge) is already in use\n`);
  });

  it('aggregator with PostgreSQL unreachable exits 1 instead of hanging on its NATS connection', async () => {
    const r = await spawnBin('voicegate.js', ['aggregator'], { NATS_URL: process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222', DATABASE_URL: 'postgres://127.0.0.1:1/x' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^voicegate aggregator: (PostgreSQL|NATS) at \S+ is unreachable/);
  });

  it('runs `voicegate simulator` through the development wiring and stops on SIGTERM with 0', async () => {
    const r = await spawnBin('voicegate.js', ['simulator', '--port', '0', '--key', 'sk_bin:1'], {}, (out, kill) => {
      if (out.includes('listening on')) kill('SIGTERM');
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/voicegate simulator listening on http:\/\/127\.0\.0\.1:\d+/);
  });
});

describe('bin/voicegate-simulator.js', () => {
  it('prints its usage without loading the gateway', async () => {
    const r = await spawnBin('voicegate-simulator.js', ['--help'], {});
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: voicegate-simulator \[--port 7070\]/);
  });
});
