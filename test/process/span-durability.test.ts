/**
 * Issue 10 points 4 and 6: spans are safe from the first millisecond, and the spool is visible.
 * `voicegate edge` as a real process, a private nats-server (never the machine's shared one) that
 * the test kills and starts, and the edge killed with SIGKILL right after its last response:
 * - NATS just gone: every span of the served requests is in the spool when the edge dies (before,
 *   they waited up to 2 s in memory for an acknowledgement and 8 of 8 were lost); the next start,
 *   with NATS still away, shows them on /metrics; once NATS is back the stream holds each exactly once.
 * - NATS up all along: the restart replays what was not yet marked acknowledged, and JetStream's
 *   de-duplication leaves exactly one message per request.
 * - `start`, `edge` and `extproc` all show the usage families on their side port's /metrics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AckPolicy, connect, DeliverPolicy, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { decodeSpan } from '../../extproc/core/usage/span.ts';
import { devTokens, exampleConfigText, exampleSnapshot, EXAMPLES_DIR, providerKeys, REPO_ROOT, type Tokens } from '../e2e/stack.ts';
import { eventually, makeSpan } from '../usage/helpers.ts';

const N = 8;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** A nats-server of this test only, on its own port and store, stopped with SIGKILL. */
class PrivateNats {
  readonly url: string;
  #child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly storeDir: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }
  async start(): Promise<void> {
    this.#child = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: 'ignore' });
    await eventually(async () => {
      try {
        await (await connect({ servers: this.url, reconnect: false })).close();
        return true;
      } catch {
        return false;
      }
    }, 10_000, 'private nats-server up');
  }
  async kill(): Promise<void> {
    const c = this.#child;
    this.#child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((r) => {
      c.once('exit', () => r());
      c.kill('SIGKILL');
    });
  }
}

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
  output(): string;
  /** The first JSON log line whose `msg` is `msg`. */
  logLine(msg: string): Promise<Record<string, unknown>>;
}

function voicegate(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/voicegate.js'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise((r) => child.once('exit', r));
  return {
    child,
    exited,
    output: () => out,
    async logLine(msg) {
      let found: Record<string, unknown> | undefined;
      await eventually(() => {
        for (const line of out.split('\n')) {
          if (!line.startsWith('{')) continue;
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed['msg'] === msg) found = parsed;
        }
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode} before "${msg}":\n${out}`);
        return found !== undefined;
      }, 30_000, `"${msg}" log line`);
      return found!;
    },
  };
}

async function sigkill(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  await p.exited;
}

const children: ChildProcess[] = [];
let dir: string;
let config: string;
let sim: SimulatorHandle;
let tokens: Tokens;
let nats: PrivateNats;
let nc: NatsConnection | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-durable-'));
  const probe = await exampleSnapshot('http://127.0.0.1:1');
  const keys = providerKeys(probe);
  tokens = await devTokens(probe);
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 8 }, { key: keys.stt, units: 8 }] });
  await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
  config = join(dir, 'voicegate.yaml');
  await writeFile(config, await exampleConfigText(sim.url));
  nats = new PrivateNats(await freePort(), join(dir, 'nats-store'));
  await nats.start();
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await nc?.close().catch(() => undefined);
  await nats?.kill();
  await sim?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Span ids in the stream, duplicates kept, so a double shows. */
async function spanIdsIn(stream: string): Promise<string[]> {
  nc ??= await connect({ servers: nats.url, maxReconnectAttempts: -1 });
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream).catch(() => undefined);
  if (!info || info.state.messages === 0) return [];
  const consumer = await jsm.consumers.add(stream, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const c = await nc.jetstream().consumers.get(stream, consumer.name);
  const ids: string[] = [];
  for await (const m of await c.fetch({ max_messages: info.state.messages, expires: 3000 })) ids.push(decodeSpan(m.string()).spanId);
  await jsm.consumers.delete(stream, consumer.name);
  return ids;
}

function streamEnv(name: string): Record<string, string> {
  return { NATS_URL: nats.url, VOICEGATE_STREAM: name, VOICEGATE_SUBJECT_PREFIX: `${name.toLowerCase()}.spans` };
}

async function startEdge(spoolDir: string, env: Record<string, string>, sidePort = 0): Promise<{ proc: Proc; url: string; metricsUrl: string }> {
  // `--limits pod`: these cases stop NATS under traffic to test spans; in cluster mode the edge
  // would (rightly) stop admitting once its grant lease could have been reclaimed (test/limits).
  const proc = voicegate(['edge', '--config', config, '--host', '127.0.0.1', '--port', '0', '--http-port', String(sidePort), '--spool-dir', spoolDir, '--limits', 'pod'], env);
  const ready = await proc.logLine('edge ready');
  return { proc, url: String(ready['url']), metricsUrl: `http://127.0.0.1:${String(ready['metricsPort'])}/metrics` };
}

/** One billed synthesis; the request id comes back so the test can name what was served. */
async function synthesise(edgeUrl: string, i: number): Promise<string> {
  const res = await fetch(`${edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: `durable ${i}`, voice_id: 'magnus', output_format: 'wav' }),
  });
  await res.arrayBuffer();
  expect(res.status).toBe(200);
  return res.headers.get('x-request-id') ?? '';
}

async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(url)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/**
 * The edge ends an exchange (and hands its span to the sink, in the same turn) on the response's
 * 'close', which can come a fraction of a millisecond after the client has the last byte; a kill
 * in that gap is a kill before the exchange finished. So the kill waits for the edge's own count
 * of open exchanges to reach 0 — no later than that, never for an acknowledgement.
 */
async function exchangesEnded(metricsUrl: string): Promise<void> {
  await eventually(async () => {
    const text = await (await fetch(metricsUrl)).text();
    const open = [...text.matchAll(/^voicegate_edge_active_exchanges(?:\{[^}]*\})? (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    return open === 0;
  }, 5_000, 'the edge to end its exchanges');
}

describe('spans survive a kill -9 of the edge at any moment', () => {
  it('NATS just gone: all N spans are on disk when the edge is killed, visible on /metrics, and land once each', { timeout: 90_000 }, async () => {
    const stream = `VG_DURABLE_DOWN_${process.pid}`;
    const spoolDir = join(dir, 'spool-down');
    const first = await startEdge(spoolDir, streamEnv(stream));
    await first.proc.logLine('usage publisher connected to NATS');

    await nats.kill();
    for (let i = 0; i < N; i++) await synthesise(first.url, i);
    // Right after the last exchange ended: before, these spans were waiting (up to 2 s) for an ack in memory.
    await exchangesEnded(first.metricsUrl);
    await sigkill(first.proc);

    // Restarted with NATS still away: the spool it finds is what the killed edge served.
    const second = await startEdge(spoolDir, streamEnv(stream));
    await eventually(async () => (await metric(second.metricsUrl, 'voicegate_usage_spool_spans')) === N, 10_000, `voicegate_usage_spool_spans ${N} on /metrics`);
    expect(await metric(second.metricsUrl, 'voicegate_usage_spool_bytes')).toBeGreaterThan(0);
    // A span served now, while NATS is still away, joins them.
    await synthesise(second.url, N);
    await eventually(async () => (await metric(second.metricsUrl, 'voicegate_usage_spool_spans')) === N + 1, 10_000, 'the new span spooled');
    expect(await metric(second.metricsUrl, 'voicegate_usage_spans_spooled_total')).toBe(1);

    await nats.start();
    await eventually(async () => (await metric(second.metricsUrl, 'voicegate_usage_spool_spans')) === 0, 20_000, 'spool replayed');
    expect(await metric(second.metricsUrl, 'voicegate_usage_spans_replayed_total')).toBe(N + 1);
    expect(await metric(second.metricsUrl, 'voicegate_usage_spool_fdatasync_total')).toBeGreaterThan(0);
    const ids = await spanIdsIn(stream);
    expect(ids).toHaveLength(N + 1);
    expect(new Set(ids).size).toBe(N + 1);
    await stop(second.proc);
    expect(second.proc.child.exitCode).toBe(0);
  });

  it('NATS up all along: killed right after the responses, restarted, exactly N in the stream', { timeout: 60_000 }, async () => {
    const stream = `VG_DURABLE_UP_${process.pid}`;
    const spoolDir = join(dir, 'spool-up');
    const first = await startEdge(spoolDir, streamEnv(stream));
    await first.proc.logLine('usage publisher connected to NATS');
    for (let i = 0; i < N; i++) await synthesise(first.url, i);
    await exchangesEnded(first.metricsUrl);
    await sigkill(first.proc);

    const second = await startEdge(spoolDir, streamEnv(stream));
    await second.proc.logLine('usage publisher connected to NATS');
    await eventually(async () => (await spanIdsIn(stream)).length >= N, 20_000, `${N} spans in the stream`).catch(async (err: unknown) => {
      throw new Error(`${String(err)}; in the stream: ${(await spanIdsIn(stream)).length}\n${second.proc.output().slice(-3000)}`);
    });
    // What the restart replays (spans acknowledged after the last offset write) is dropped by msg id.
    await new Promise((r) => setTimeout(r, 1_000));
    const ids = await spanIdsIn(stream);
    expect(ids).toHaveLength(N);
    expect(new Set(ids).size).toBe(N);
    await stop(second.proc);
  });
});

describe('the usage metrics are on the side port of every process that publishes spans', () => {
  // As an outage leaves it: spans in the spool, NATS unreachable, so they stay there.
  const seeded = (name: string): string => {
    const d = join(dir, `seed-${name}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'spool.jsonl'), Array.from({ length: 5 }, () => `${JSON.stringify(makeSpan())}\n`).join(''));
    return d;
  };
  const unreachable = async () => ({ NATS_URL: `nats://127.0.0.1:${await freePort()}`, DATABASE_URL: '' });

  for (const command of ['edge', 'extproc', 'start'] as const) {
    it(`voicegate ${command}: voicegate_usage_spool_spans 5 while 5 spans are spooled`, { timeout: 60_000 }, async () => {
      const side = await freePort();
      const spoolDir = seeded(command);
      const args = {
        edge: ['edge', '--config', config, '--port', '0', '--http-port', String(side)],
        extproc: ['extproc', '--config', config, '--port', '0', '--http-port', String(side)],
        // --control off: the spool is the subject here, not the control plane (PGlite's first start costs seconds).
        start: ['start', '--config', config, '--port', '0', '--grpc-port', '0', '--http-port', String(side), '--simulator', 'off', '--control', 'off'],
      }[command];
      const proc = voicegate([...args, '--spool-dir', spoolDir], await unreachable());
      const url = `http://127.0.0.1:${side}/metrics`;
      try {
        await eventually(async () => (await metric(url, 'voicegate_usage_spool_spans').catch(() => undefined)) === 5, 30_000, `spool gauge on ${command}'s /metrics:\n${proc.output()}`);
        expect(await metric(url, 'voicegate_usage_spool_bytes')).toBeGreaterThan(0);
        expect(await metric(url, 'voicegate_usage_spans_published_total')).toBe(0);
        expect(await metric(url, 'voicegate_usage_spool_dropped_total')).toBe(0);
      } finally {
        await stop(proc);
      }
    });
  }
});
