/**
 * The production split, as processes: `voicegate extproc` (the service Envoy calls) and
 * `voicegate edge --authz grpc://…` in front of the simulator. Proves the CLI wiring of both and
 * that a decision made in another process is applied: key injected, token stripped, denials kept.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { devTokens, exampleConfigText, exampleSnapshot, EXAMPLES_DIR, providerKeys, REPO_ROOT, type Tokens } from '../e2e/stack.ts';

interface Proc {
  child: ChildProcess;
  /** Resolves with the first JSON log line whose `msg` matches. */
  logLine(msg: string): Promise<Record<string, unknown>>;
}

function voicegate(args: string[], dir: string): Proc {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/voicegate.js'), ...args], {
    cwd: dir,
    env: { ...process.env, LOG_LEVEL: 'info', NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  return {
    child,
    logLine: (msg) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${msg}" log line:\n${out}`)), 30_000);
        const scan = () => {
          for (const line of out.split('\n')) {
            if (!line.startsWith('{')) continue;
            const parsed = JSON.parse(line) as Record<string, unknown>;
            if (parsed['msg'] === msg) {
              clearTimeout(timer);
              child.stdout!.off('data', scan);
              return resolve(parsed);
            }
          }
        };
        child.stdout!.on('data', scan);
        scan();
      }),
  };
}

let dir: string;
let sim: SimulatorHandle;
let tokens: Tokens;
let keys: { tts: string; stt: string };
let edgeUrl: string;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-split-'));
  const probe = await exampleSnapshot('http://127.0.0.1:1');
  keys = providerKeys(probe);
  tokens = await devTokens(probe);
  sim = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 4 }, { key: keys.stt, units: 4 }] });
  await cp(join(EXAMPLES_DIR, 'dev'), join(dir, 'dev'), { recursive: true });
  const config = join(dir, 'voicegate.yaml');
  await writeFile(config, await exampleConfigText(sim.url));

  const extproc = voicegate(['extproc', '--config', config, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--spool-dir', join(dir, 'x')], dir);
  procs.push(extproc.child);
  const grpcPort = (await extproc.logLine('extproc ready'))['grpcPort'];
  const edge = voicegate(
    ['edge', '--config', config, '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--spool-dir', join(dir, 'e'), '--authz', `grpc://127.0.0.1:${String(grpcPort)}`],
    dir,
  );
  procs.push(edge.child);
  edgeUrl = String((await edge.logLine('edge ready'))['url']);
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once('close', r)) : undefined)));
  await sim?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('voicegate extproc + voicegate edge --authz grpc://', () => {
  it("serves alice's TTS with the account key injected and her token stripped", async () => {
    const before = sim.requests().length;
    const res = await fetch(`${edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech?token=${tokens.alice}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Split processes.', voice_id: 'magnus', output_format: 'wav' }),
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).subarray(0, 4).toString('latin1')).toBe('RIFF');
    const seen = sim.requests().slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${keys.tts}`);
    expect(seen[0]!.url).toBe('/waves/v1/lightning-v3.1/get_speech');
  });

  it("refuses bob's Lightning request with the decision's 403 body, never reaching the provider", async () => {
    const before = sim.requests().length;
    const res = await fetch(`${edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.bob}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'No.', voice_id: 'magnus' }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'not_entitled' } });
    expect(sim.requests().length).toBe(before);
  });

  it('stops both processes cleanly on SIGTERM', async () => {
    const exits = procs.map((p) => new Promise<number | null>((r) => p.once('close', (code) => r(code))));
    for (const p of procs) p.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0]);
  });
});
