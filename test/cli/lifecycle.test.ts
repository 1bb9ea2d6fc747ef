/**
 * `main()` in process: a failed start closes what already started and returns non-zero with one
 * line (no more processes hung on an open socket), and an abort drains (not ready), waits the
 * drain delay, then closes everything.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../extproc/main/main.ts';

const CONFIG = 'examples/voicegate.yaml';
const QUIET = { ...process.env, LOG_LEVEL: 'silent' };

/** A port nobody listens on right now. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once the port can be bound again, i.e. nothing kept it open. */
async function released(port: number): Promise<boolean> {
  const s = createServer();
  const ok = await new Promise<boolean>((r) => {
    s.once('error', () => r(false));
    s.listen(port, '127.0.0.1', () => r(true));
  });
  if (ok) await new Promise<void>((r) => s.close(() => r()));
  return ok;
}

function run(args: string[], signal = new AbortController().signal, env = QUIET) {
  let stderr = '';
  let stdout = '';
  const code = main(args, signal, { env, stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stderr: () => stderr, stdout: () => stdout };
}

let dir: string;
let busy: Server;
let busyPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-lifecycle-'));
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  busyPort = (busy.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise<void>((r) => busy.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

describe('a failed start', () => {
  it('edge on a busy port: exit 1, one line, and the side port it had opened is closed again', async () => {
    const side = await freePort();
    const r = run(['edge', '--config', CONFIG, '--host', '127.0.0.1', '--port', String(busyPort), '--http-port', String(side), '--spool-dir', dir]);
    expect(await r.code).toBe(1);
    expect(r.stderr()).toBe(`voicegate edge: port ${busyPort} (edge) is already in use\n`);
    expect(await released(side)).toBe(true);
  });

  it('extproc with a busy --http-port: exit 1, and its gRPC port is free', async () => {
    const grpc = await freePort();
    const r = run(['extproc', '--config', CONFIG, '--host', '127.0.0.1', '--port', String(grpc), '--http-port', String(busyPort), '--spool-dir', dir]);
    expect(await r.code).toBe(1);
    expect(r.stderr()).toBe(`voicegate extproc: port ${busyPort} (side port, --http-port) is already in use\n`);
    expect(await released(grpc)).toBe(true);
  });

  it('aggregator with PostgreSQL unreachable: exit 1 with a line naming the database, soon', async () => {
    const started = Date.now();
    const r = run(['aggregator', '--nats', process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222', '--database', 'postgres://vg:secret@127.0.0.1:1/x']);
    expect(await r.code).toBe(1);
    const lines = r.stderr().trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^voicegate aggregator: (PostgreSQL at postgres:\/\/vg:\*\*\*@127\.0\.0\.1:1\/x|NATS at .*) is unreachable/);
    expect(r.stderr()).not.toContain('secret');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('start with a loopback upstream but no simulator wired in says so and exits 1', async () => {
    const r = run(['start', '--config', CONFIG, '--port', '0', '--grpc-port', '0', '--http-port', '0', '--spool-dir', dir]);
    expect(await r.code).toBe(1);
    expect(r.stderr()).toMatch(/^voicegate start: the upstream http:\/\/127\.0\.0\.1:7070 is loopback, but the bundled simulator is not installed .*--simulator off\n$/);
    expect(r.stdout()).toBe('');
  });
});

describe('on abort', () => {
  it('extproc reports not ready, waits --drain-delay, then closes and returns 0', async () => {
    const [grpc, side] = [await freePort(), await freePort()];
    const ac = new AbortController();
    const r = run(['extproc', '--config', CONFIG, '--host', '127.0.0.1', '--port', String(grpc), '--http-port', String(side), '--spool-dir', dir, '--drain-delay', '400ms'], ac.signal);
    const readyz = () => fetch(`http://127.0.0.1:${side}/readyz`).then((res) => res.status, () => 0);
    for (let i = 0; (await readyz()) !== 200; i++) {
      if (i > 200) throw new Error(`never ready: ${r.stderr()}`);
      await new Promise((res) => setTimeout(res, 25));
    }
    // The usage pipeline counts on the registry this process serves.
    expect(await (await fetch(`http://127.0.0.1:${side}/metrics`)).text()).toMatch(/^voicegate_usage_spool_spans 0$/m);
    const abortedAt = Date.now();
    ac.abort();
    await new Promise((res) => setTimeout(res, 100));
    expect(await readyz()).toBe(503);
    expect(await r.code).toBe(0);
    expect(Date.now() - abortedAt).toBeGreaterThanOrEqual(400);
    expect(r.stderr()).toBe('');
    expect(await released(side)).toBe(true);
    expect(await released(grpc)).toBe(true);
  });

  it('an abort before anything started returns 0 without listening', async () => {
    const ac = new AbortController();
    ac.abort();
    const side = await freePort();
    const r = run(['edge', '--config', CONFIG, '--host', '127.0.0.1', '--port', '0', '--http-port', String(side), '--spool-dir', dir], ac.signal);
    expect(await r.code).toBe(0);
    expect(await released(side)).toBe(true);
  });
});

describe('environment', () => {
  it.each(['start', 'extproc', 'edge', 'aggregator', 'otel-export'])('%s reads the span stream from VOICEGATE_STREAM and VOICEGATE_SUBJECT_PREFIX', async (name) => {
    const { COMMANDS } = await import('../../extproc/main/main.ts');
    const { parseOptions } = await import('../../extproc/main/parse.ts');
    const env = { VOICEGATE_STREAM: 'S1', VOICEGATE_SUBJECT_PREFIX: 's1.spans', NATS_URL: 'nats://n:4222', DATABASE_URL: 'postgres://d/x', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://o:4318' };
    const parsed = parseOptions(COMMANDS[name]!.options!, ['--config', CONFIG].filter(() => ['start', 'extproc', 'edge'].includes(name)), env);
    expect(parsed).toMatchObject({ ok: true, value: { stream: 'S1', subjectPrefix: 's1.spans', nats: 'nats://n:4222' } });
    // The flag wins over the variable.
    expect(parseOptions(COMMANDS[name]!.options!, [...(['start', 'extproc', 'edge'].includes(name) ? ['--config', CONFIG] : []), '--stream', 'S2'], env)).toMatchObject({ value: { stream: 'S2' } });
  });
});
