/**
 * `voicegate start` (what `npm start` runs) as a real process: with NATS_URL and DATABASE_URL it
 * runs the aggregator too, so `voicegate usage` and `GET /usage` show a request at once; without
 * them spans go to `<spool-dir>/spans.jsonl` with one summary log line per request.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { decodeSpan } from '../../extproc/core/usage/span.ts';
import { eventually, uniqueName } from '../usage/helpers.ts';
import { exampleConfigText, NATS_URL, REPO, textOf, useIsolatedRun } from '../usage-e2e/helpers.ts';

const run = promisify(execFile);
const fixture = useIsolatedRun('vg-start-', 'VGSTART_SPANS');
const { tmp, stream, children } = fixture;

/** A port free right now (the simulator `start` launches needs a fixed one from the config). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

interface Started {
  readonly child: ChildProcess;
  readonly edgeUrl: string;
  readonly sideUrl: string;
  readonly token: string;
  readonly stdout: () => string;
  readonly exited: Promise<number | string>;
}

/** Runs `voicegate start` on ephemeral ports with `env` and parses its banner. */
async function startGateway(name: string, env: Record<string, string | undefined>): Promise<Started> {
  const dir = join(tmp, name);
  const config = join(tmp, `${name}.yaml`);
  writeFileSync(config, exampleConfigText(`http://127.0.0.1:${await freePort()}`));
  const child = spawn(
    process.execPath,
    ['bin/voicegate.js', 'start', '--config', config, '--port', '0', '--grpc-port', '0', '--http-port', '0', '--spool-dir', dir, '--admin-port', '0', '--data-dir', join(dir, 'control'), '--profile', 'instant'],
    { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? 'unknown')));
  await eventually(() => {
    if (child.exitCode !== null) throw new Error(`voicegate start exited ${child.exitCode}: ${err}`);
    return out.includes('Press Ctrl-C to stop.');
    // The embedded control plane's first start (PGlite, migrations) takes seconds on a busy machine.
  }, 90_000, 'the start banner');
  const pick = (re: RegExp) => {
    const m = re.exec(out);
    if (!m?.[1]) throw new Error(`banner lacks ${re}:\n${out}`);
    return m[1];
  };
  return {
    child,
    edgeUrl: pick(/gateway \(edge\)\s+(http:\/\/127\.0\.0\.1:\d+)/),
    sideUrl: pick(/metrics & usage\s+(http:\/\/127\.0\.0\.1:\d+)\/metrics/),
    token: pick(/export VG_TOKEN=(\S+)/),
    stdout: () => out,
    exited,
  };
}

/** What a user runs first: the banner's TTS request, 45 characters. */
async function speak(g: Started, text: string): Promise<number> {
  const r = await request(`${g.edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech`, {
    method: 'POST',
    headers: { authorization: `Bearer ${g.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text, voice_id: 'magnus', output_format: 'wav' }),
  });
  await r.body.arrayBuffer();
  return r.statusCode;
}

const TEXT = textOf(45);
// 45 characters × 0.0195 / 1000 (examples/voicegate.yaml).
const ALICE = { key: 'alice', requests: 1, errors: 0, characters: 45, audioSeconds: '0', costUsd: '0.0008775' };

function baseEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of ['NATS_URL', 'DATABASE_URL', 'VOICEGATE_STREAM', 'VOICEGATE_SUBJECT_PREFIX', 'VOICEGATE_DURABLE', 'VOICEGATE_KEK']) delete env[k];
  return env;
}

describe('voicegate start and usage', () => {
  it('with NATS_URL and DATABASE_URL: `voicegate usage` and GET /usage show a request at once', { timeout: 150_000 }, async () => {
    const configBucket = uniqueName('vg_start_config');
    const g = await startGateway('nats', {
      ...baseEnv(),
      NATS_URL,
      DATABASE_URL: fixture.db.url,
      // The embedded control plane runs on this PostgreSQL too; its tokens need a real KEK there.
      VOICEGATE_KEK: `k1:${randomBytes(32).toString('base64')}`,
      // With NATS it publishes the pods' snapshot too: their key, and a bucket of this run's own.
      VOICEGATE_SNAPSHOT_KEY: `s1:${randomBytes(32).toString('base64')}`,
      VOICEGATE_CONFIG_BUCKET: configBucket,
      VOICEGATE_STREAM: stream,
      VOICEGATE_SUBJECT_PREFIX: `${stream.toLowerCase()}.spans`,
      VOICEGATE_DURABLE: uniqueName('agg'),
    });
    expect(g.stdout()).toMatch(/usage spans\s+nats\+postgres/);
    expect(await speak(g, TEXT)).toBe(200);

    let rows: unknown[] = [];
    await eventually(async () => {
      const r = await run(process.execPath, ['bin/voicegate.js', 'usage', '--by', 'user', '--json'], { cwd: REPO, env: { ...baseEnv(), DATABASE_URL: fixture.db.url } })
        .catch(() => ({ stdout: '{"rows":[]}' }));
      rows = (JSON.parse(r.stdout) as { rows: unknown[] }).rows;
      return rows.length > 0;
    }, 15_000, 'alice in `voicegate usage`');
    expect(rows).toEqual([ALICE]);

    const http = await request(`${g.sideUrl}/usage?by=model`);
    expect(http.statusCode).toBe(200);
    expect(((await http.body.json()) as { by: string; rows: unknown[] })).toMatchObject({
      by: 'model',
      rows: [{ ...ALICE, key: 'smallest/lightning-v3.1' }],
    });
    // The run used its own stream, not the machine-wide default.
    expect((await (await fixture.nc.jetstreamManager()).streams.info(stream)).state.messages).toBe(1);

    g.child.kill('SIGINT');
    expect(await g.exited).toBe(0);
    const jsm = await fixture.nc.jetstreamManager();
    for (const s of [`KV_${configBucket}`, `OBJ_${configBucket}-objects`]) await jsm.streams.delete(s).catch(() => undefined);
  });

  it('without NATS: spans go to <spool-dir>/spans.jsonl and each request logs a summary line', { timeout: 150_000 }, async () => {
    const g = await startGateway('file', baseEnv());
    const file = join(tmp, 'file', 'spans.jsonl');
    expect(g.stdout()).toContain(`usage spans        file ${join(tmp, 'file')}/spans.jsonl`);
    expect(await speak(g, TEXT)).toBe(200);
    await eventually(() => existsSync(file) && readFileSync(file, 'utf8').endsWith('\n'), 10_000, 'a span in spans.jsonl');
    const spans = readFileSync(file, 'utf8').trim().split('\n').map((l) => decodeSpan(l));
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ user: 'alice', teams: ['voice'], model: 'lightning-v3.1', status: 200, characters: 45, costUsd: '0.0008775' });
    expect(readFileSync(file, 'utf8')).not.toContain(g.token);
    const summaries = () => g.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'usage');
    // The file and the log line travel separately (the log through the child's stdout pipe).
    await eventually(() => summaries().length > 0, 10_000, 'a usage summary log line');
    const summary = summaries();
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({ user: 'alice', model: 'lightning-v3.1', status: 200, characters: 45, costUsd: '0.0008775', requestId: spans[0]!.requestId });

    g.child.kill('SIGINT');
    expect(await g.exited).toBe(0);
  });
});
