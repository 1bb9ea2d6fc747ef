/**
 * Issue 10, points 1 and 2, as an operator sees them: a private PostgreSQL (never the machine's)
 * is stopped with `pg_ctl -m fast` and started again under traffic.
 * - `voicegate start` (edge, decision and in-process aggregator in one process) keeps serving while
 *   the database is down, and every span of every served request reaches the roll-ups exactly once
 *   after it is back.
 * - `voicegate aggregator` started while the database is down does not hang half-alive: it exits
 *   non-zero with one line naming the database.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../edge/helpers.ts';
import { eventually, makeSpan } from '../usage/helpers.ts';
import { encodeSpan } from '../../extproc/core/usage/span.ts';
import { ensureSpanStream, spanSubject } from '../../extproc/adapters/nats/span-stream.ts';
import { EXAMPLES_DIR, exampleConfigText, REPO_ROOT } from '../e2e/stack.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../setup/private-postgres.ts';

const run = promisify(execFile);
const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function spanCount(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  // The server may be stopped under this client; that is the test, not an error of it.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM usage_spans');
    return Number(r.rows[0]?.n ?? 0);
  } catch {
    return -1;
  } finally {
    await client.end().catch(() => undefined);
  }
}

describe('a PostgreSQL restart under traffic', () => {
  let postgres: PrivatePostgres;
  let dir: string;
  let child: ChildProcess;
  let stdout = '';
  let stderr = '';
  let edgeUrl = '';
  let token = '';
  let startStream = '';

  beforeAll(async () => {
    postgres = await startPrivatePostgres();
    dir = await mkdtemp(join(tmpdir(), 'vg-pgrestart-'));
    await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
    await writeFile(join(dir, 'voicegate.yaml'), await exampleConfigText(`http://127.0.0.1:${await freePort()}`));
    const unique = `${process.pid}_${Date.now()}`;
    startStream = `VG_PGRESTART_${unique}`;
    child = spawn(
      process.execPath,
      ['bin/voicegate.js', 'start', '--config', join(dir, 'voicegate.yaml'), '--port', '0', '--grpc-port', '0', '--http-port', '0', '--spool-dir', join(dir, 'spool'), '--control', 'off'],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, NATS_URL, DATABASE_URL: postgres.url, VOICEGATE_STREAM: startStream, VOICEGATE_SUBJECT_PREFIX: `vg.pgrestart.${unique}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    await until(() => stdout.includes('Press Ctrl-C to stop.') || child.exitCode !== null, 30_000, 'the banner');
    if (child.exitCode !== null) throw new Error(`voicegate start exited ${child.exitCode}:\n${stderr}`);
    edgeUrl = /gateway \(edge\)\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
    token = /export VG_TOKEN=(\S+)/.exec(stdout)![1]!;
  }, 90_000);

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    }
    await postgres?.destroy();
    const nc = await connect({ servers: NATS_URL });
    await (await nc.jetstreamManager()).streams.delete(startStream).catch(() => undefined);
    await nc.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function synthesise(): Promise<number> {
    const res = await fetch(`${edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'restart', voice_id: 'magnus', output_format: 'wav' }),
    });
    await res.arrayBuffer();
    return res.status;
  }

  it('serves throughout, and every served request is rolled up exactly once after the database returns', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await synthesise());
    await eventually(async () => (await spanCount(postgres.url)) === 5, 20_000, '5 spans before the restart');

    await postgres.stop();
    const downSince = Date.now();
    while (Date.now() - downSince < 3_000) statuses.push(await synthesise());
    expect(child.exitCode).toBeNull();

    await postgres.start();
    // The process is still the one we started, serving, and PostgreSQL is back.
    for (let i = 0; i < 3; i++) statuses.push(await synthesise());
    expect(statuses.every((s) => s === 200)).toBe(true);
    await eventually(async () => (await spanCount(postgres.url)) === statuses.length, 60_000, `${statuses.length} spans after the restart`);
    // Nothing extra arrives later (exactly once, not at least once).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await spanCount(postgres.url)).toBe(statuses.length);
    expect(child.exitCode).toBeNull();
  }, 120_000);

  it('an aggregator started while the database is down exits non-zero with one line, instead of hanging', async () => {
    await postgres.stop();
    try {
      const started = Date.now();
      const result = await run(process.execPath, ['bin/voicegate.js', 'aggregator'], {
        cwd: REPO_ROOT,
        env: { ...process.env, NATS_URL, DATABASE_URL: postgres.url, VOICEGATE_STREAM: `VG_PGDOWN_${process.pid}` },
        timeout: 30_000,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code?: number; stderr?: string; killed?: boolean }) => ({ code: err.killed ? 'hung' : err.code, stderr: err.stderr ?? '' }),
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`PostgreSQL at postgres://postgres@127.0.0.1:${postgres.port}/postgres is unreachable`);
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      await postgres.start();
    }
  }, 60_000);

  it('a running aggregator reports not ready while the database is away, stays alive, and catches up', async () => {
    const unique = `${process.pid}_${Date.now()}`;
    const stream = `VG_AGGREADY_${unique}`;
    const prefix = `vg.aggready.${unique}`;
    const nc = await connect({ servers: NATS_URL });
    const js = nc.jetstream();
    await ensureSpanStream(await nc.jetstreamManager(), { name: stream, subjectPrefix: prefix });
    const publish = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const span = makeSpan();
        await js.publish(spanSubject(prefix, span), encodeSpan(span), { msgID: span.spanId });
      }
    };
    const sidePort = await freePort();
    const agg = spawn(process.execPath, ['bin/voicegate.js', 'aggregator', '--http-port', String(sidePort)], {
      cwd: REPO_ROOT,
      env: { ...process.env, NATS_URL, DATABASE_URL: postgres.url, VOICEGATE_STREAM: stream, VOICEGATE_SUBJECT_PREFIX: prefix, VOICEGATE_DURABLE: `agg_${unique}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let aggErr = '';
    agg.stderr!.setEncoding('utf8').on('data', (s: string) => (aggErr += s));
    const ready = async () => (await fetch(`http://127.0.0.1:${sidePort}/readyz`).catch(() => undefined))?.status;
    const gauge = async () => /voicegate_dependency_up\{dependency="postgres"\} (\d)/.exec(await (await fetch(`http://127.0.0.1:${sidePort}/metrics`)).text())?.[1];
    try {
      await eventually(async () => (await ready()) === 200, 30_000, 'aggregator ready');
      const before = await spanCount(postgres.url);
      await publish(3);
      await eventually(async () => (await spanCount(postgres.url)) === before + 3, 20_000, 'first spans rolled up');

      await postgres.stop();
      await eventually(async () => (await ready()) === 503, 10_000, 'not ready while PostgreSQL is away');
      expect(await gauge()).toBe('0');
      await publish(4);
      await new Promise((r) => setTimeout(r, 1_500));
      expect(agg.exitCode).toBeNull();

      await postgres.start();
      await eventually(async () => (await ready()) === 200, 15_000, 'ready again');
      expect(await gauge()).toBe('1');
      await eventually(async () => (await spanCount(postgres.url)) === before + 7, 30_000, 'the outage spans rolled up');
      expect(aggErr).toContain('postgres is away');
    } finally {
      const exited = new Promise((r) => agg.once('exit', r));
      agg.kill('SIGTERM');
      await exited;
      await (await nc.jetstreamManager()).streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
  }, 120_000);
});
