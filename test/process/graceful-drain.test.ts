/**
 * SIGTERM on a real `voicegate start` child (bundled simulator, realistic pacing, no NATS: spans go
 * to `<spool>/spans.jsonl`) with REST, SSE and WebSocket exchanges in flight: accepting stops, the
 * side port reports not ready, REST and SSE finish, WebSockets get 1001, every span is written and
 * the exit code is 0. A second child shows the drain window cutting what outlives it, and the drain
 * delay keeping the edge accepting while its own /readyz says 503.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetch } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { closed, opened, until } from '../edge/helpers.ts';
import { EXAMPLES_DIR, exampleConfigText, REPO_ROOT } from '../e2e/stack.ts';
import { parseSse, parseWav } from '../e2e/wire.ts';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Started {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly edge: string;
  readonly side: string;
  readonly token: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly output: () => string;
}

const running: Started[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill('SIGKILL');
      await s.exited;
    }
    await rm(s.dir, { recursive: true, force: true });
  }
});

/** `voicegate start` on ephemeral ports, its accounts wide enough for every exchange at once. */
async function startGateway(extra: string[]): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'voicegate-drain-'));
  await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
  const upstream = `http://127.0.0.1:${await freePort()}`;
  const config = (await exampleConfigText(upstream)).replaceAll('concurrency: 4', 'concurrency: 32');
  await writeFile(join(dir, 'voicegate.yaml'), config);
  const { NATS_URL: _n, DATABASE_URL: _d, ...env } = process.env;
  const child = spawn(
    process.execPath,
    ['bin/voicegate.js', 'start', '--config', join(dir, 'voicegate.yaml'), '--port', '0', '--grpc-port', '0', '--http-port', '0', '--spool-dir', join(dir, 'spool'), '--admin-port', '0', '--data-dir', join(dir, 'control'), '--profile', 'realistic', ...extra],
    { cwd: REPO_ROOT, env: { ...env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const started: Started = {
    child,
    dir,
    exited,
    output: () => out,
    get edge() {
      return /gateway \(edge\)\s+(\S+)/.exec(out)![1]!;
    },
    get side() {
      return /metrics & usage\s+(\S+)\/metrics/.exec(out)![1]!;
    },
    get token() {
      return /export VG_TOKEN=(\S+)/.exec(out)![1]!;
    },
  };
  running.push(started);
  // The embedded control plane's first start (PGlite under the temporary folder) takes seconds.
  await until(() => out.includes('Press Ctrl-C to stop.') || child.exitCode !== null, 90_000, 'the banner');
  if (child.exitCode !== null) throw new Error(`voicegate start exited ${child.exitCode}:\n${out}`);
  return started;
}

async function spanLines(dir: string): Promise<Array<{ status: number; routeKind: string; error: string; closeCode?: number }>> {
  const text = await readFile(join(dir, 'spool', 'spans.jsonl'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as { status: number; routeKind: string; error: string; closeCode?: number });
}

/** ~80 characters: 5 s of audio, which the realistic profile (4× real time) takes ~1.3 s to make. */
const TEXT = 'Graceful drains let every request that was already in flight finish its audio.';

function tts(g: Started, path: 'get_speech' | 'stream', text = TEXT) {
  return fetch(`${g.edge}/smallest/waves/v1/lightning-v3.1/${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${g.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text, voice_id: 'magnus', output_format: 'wav' }),
  });
}

/** True when the edge refuses a new connection, or answers it with 503. */
async function refusedOrUnavailable(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { headers: { connection: 'close' } });
    await r.arrayBuffer();
    return r.status === 503;
  } catch (err) {
    return /ECONNREFUSED|ECONNRESET|other side closed|SocketError/.test(`${(err as Error).message} ${String((err as { cause?: unknown }).cause)}`);
  }
}

describe('voicegate start drains on SIGTERM', () => {
  it('finishes 8 REST and 4 SSE exchanges, closes 4 WebSockets with 1001, writes 16 spans, exits 0', async () => {
    const g = await startGateway([]);
    const wsUrl = `${g.edge.replace(/^http/, 'ws')}/smallest/waves/v1/tts/live?token=${g.token}`;
    const sockets = Array.from({ length: 4 }, () => new WebSocket(wsUrl));
    await Promise.all(sockets.map(opened));
    const wsClosed = sockets.map(closed);
    for (const s of sockets) s.send(JSON.stringify({ text: 'A session that stays open.', voice_id: 'magnus' }));

    const rest = Array.from({ length: 8 }, async () => {
      const r = await tts(g, 'get_speech');
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
    });
    const sse = Array.from({ length: 4 }, async () => {
      const r = await tts(g, 'stream');
      return { status: r.status, text: await r.text() };
    });
    // Every exchange is past its decision and waiting on the provider's pacing.
    await new Promise((r) => setTimeout(r, 400));
    const sigterm = Date.now();
    g.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 150));

    // Accepting stopped and the side port says not ready, while the exchanges above still run.
    expect(await refusedOrUnavailable(`${g.edge}/healthz`)).toBe(true);
    const ready = await fetch(`${g.side}/readyz`).then(async (r) => (await r.arrayBuffer(), r.status), () => 'refused' as const);
    expect(ready === 503 || ready === 'refused').toBe(true);

    const restDone = await Promise.all(rest);
    for (const r of restDone) {
      expect(r.status).toBe(200);
      // The whole WAV: 78 characters at 16 per second.
      expect(parseWav(r.body).seconds).toBeCloseTo(TEXT.length / 16, 1);
    }
    for (const r of await Promise.all(sse)) {
      expect(r.status).toBe(200);
      expect(parseSse(r.text).at(-1)).toEqual({ event: undefined, data: { status: '200', done: true } });
    }
    expect((await Promise.all(wsClosed)).map((c) => c.code)).toEqual([1001, 1001, 1001, 1001]);

    expect(await g.exited).toEqual({ code: 0, signal: null });
    const drainMs = Date.now() - sigterm;
    const spans = await spanLines(g.dir);
    expect(spans).toHaveLength(16);
    expect(spans.filter((s) => s.routeKind === 'websocket').map((s) => s.closeCode)).toEqual([1001, 1001, 1001, 1001]);
    expect(spans.filter((s) => s.routeKind !== 'websocket').every((s) => s.status === 200 && s.error === '')).toBe(true);
    expect(g.output()).not.toContain('dropped');
    // Bounded by the exchanges, not by the 30 s window.
    expect(drainMs).toBeLessThan(10_000);
    console.log(`drain: SIGTERM to exit ${drainMs} ms`);
  }, 120_000);

  it('cuts an exchange that outlives --drain-timeout, still writes its span and exits 0; --drain-delay keeps accepting while /readyz says 503', async () => {
    const g = await startGateway(['--drain-timeout', '500ms', '--drain-delay', '600ms']);
    // ~60 s of audio: ~15 s of pacing, far beyond the window.
    const long = tts(g, 'stream', TEXT.repeat(12)).then(
      async (r) => ({ status: r.status, text: await r.text().catch(() => 'cut') }),
      (err: unknown) => ({ status: 0, text: String(err) }),
    );
    await new Promise((r) => setTimeout(r, 400));
    const sigterm = Date.now();
    g.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));

    // Within the drain delay: not ready on the edge's own port, yet still serving new connections.
    const readyz = await fetch(`${g.edge}/readyz`, { headers: { connection: 'close' } });
    expect(readyz.status).toBe(503);
    await readyz.arrayBuffer();
    const health = await fetch(`${g.edge}/healthz`, { headers: { connection: 'close' } });
    expect(health.status).toBe(200);
    await health.arrayBuffer();

    expect(await g.exited).toEqual({ code: 0, signal: null });
    const drainMs = Date.now() - sigterm;
    // 600 ms delay + 500 ms window + closing; far below the stream's own ~15 s.
    expect(drainMs).toBeLessThan(4_000);
    const r = await long;
    // The stream was cut: the client never saw its `done` event (undici rejects the body).
    expect(r.text).not.toMatch(/"done":\s*true/);
    const spans = await spanLines(g.dir);
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ routeKind: 'sse', status: 200 });
    expect(spans[0]!.error).toBe('drain_timeout');
    console.log(`drain window: SIGTERM to exit ${drainMs} ms, span error ${spans[0]!.error}`);
  }, 120_000);
});
