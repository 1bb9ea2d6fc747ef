/**
 * The peers voicegate is measured beside, in the same run, on the same upstream, load generator
 * and core pinning: nginx (Debian's package — the C reverse-proxy floor), a minimal Node reverse
 * proxy (bench/servers/node-proxy.ts — the Node floor, no decision) and Portkey's open-source
 * gateway (npm `@portkey-ai/gateway` — the most used Node AI gateway). nginx and Portkey are
 * installed at bench time when missing (never as dependencies of voicegate); a peer that cannot be
 * installed is skipped with the reason printed, and the run goes on without it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nginxConfig } from './nginx-config.ts';
import { startServer, type CpuPlan, type ServerChild } from './processes.ts';

export type PeerName = 'node floor' | 'nginx' | 'portkey';
export const PEERS: readonly PeerName[] = ['node floor', 'nginx', 'portkey'];

/** Pinned so that every run compares with the same Portkey; the scratch install is cached by it. */
export const PORTKEY_VERSION = '1.15.2';

export interface PeerStatus {
  readonly name: PeerName;
  readonly available: boolean;
  /** What runs, e.g. `nginx/1.22.1 (Debian package)`, or why the peer is skipped. */
  readonly detail: string;
}

interface Located {
  readonly command: string;
  readonly version: string;
}

let nginxLocated: Located | string | undefined;
let portkeyLocated: Located | string | undefined;
let portkeyAudio: string | undefined;

function which(cmd: string): string | undefined {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

function tail(text: string | Buffer | null | undefined, n = 300): string {
  const s = String(text ?? '').trim();
  return s.length > n ? `…${s.slice(-n)}` : s;
}

/** nginx from PATH, else Debian's package installed non-interactively (as root only). */
function locateNginx(log: (m: string) => void): Located | string {
  let bin = which('nginx');
  if (!bin) {
    if (process.getuid?.() !== 0) return 'nginx is not installed and installing it needs root (apt-get install nginx)';
    if (!which('apt-get')) return 'nginx is not installed and there is no apt-get to install it';
    log('  nginx not found: apt-get install -y nginx …');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => spawnSync('apt-get', ['install', '-y', '-q', 'nginx'], { env, encoding: 'utf8', timeout: 300_000 });
    let r = install();
    if (r.status !== 0) {
      // A stale or missing package list is the usual cause: refresh it once and retry.
      spawnSync('apt-get', ['update', '-q'], { env, encoding: 'utf8', timeout: 300_000 });
      r = install();
    }
    bin = which('nginx');
    if (r.status !== 0 || !bin) return `apt-get install nginx failed (${r.error?.message ?? `exit ${r.status}`}): ${tail(r.stderr)}`;
  }
  // `nginx -v` writes its version to stderr.
  const v = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 10_000 });
  const m = /nginx\/(\S+)/.exec(`${v.stderr}${v.stdout}`);
  if (!m) return `${bin} -v did not print a version: ${tail(v.stderr)}`;
  return { command: bin, version: `nginx/${m[1]}` };
}

/** Portkey's gateway from its scratch folder, installed there with npm on first use. */
function locatePortkey(log: (m: string) => void): Located | string {
  const dir = join(tmpdir(), 'voicegate-bench-peers', `portkey-gateway-${PORTKEY_VERSION}`);
  const pkg = join(dir, 'node_modules', '@portkey-ai', 'gateway');
  const installed = (): boolean => {
    try {
      return (JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version?: unknown }).version === PORTKEY_VERSION;
    } catch {
      return false;
    }
  };
  if (!installed()) {
    if (!which('npm')) return 'npm is not on PATH to install @portkey-ai/gateway';
    log(`  installing @portkey-ai/gateway@${PORTKEY_VERSION} into ${dir} …`);
    mkdirSync(dir, { recursive: true });
    try {
      // cwd and --prefix keep the install out of this repository and its node_modules.
      execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', dir, `@portkey-ai/gateway@${PORTKEY_VERSION}`], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 300_000,
      });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      return `npm install @portkey-ai/gateway@${PORTKEY_VERSION} failed: ${tail(e.stderr) || e.message}`;
    }
    if (!installed()) return `@portkey-ai/gateway@${PORTKEY_VERSION} is not in ${dir} after npm install`;
  }
  const entry = join(pkg, 'build', 'start-server.js');
  if (!existsSync(entry)) return `${entry} is missing`;
  return { command: entry, version: `@portkey-ai/gateway ${PORTKEY_VERSION}` };
}

/** A port the OS considers free right now (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PeerStart {
  readonly cpu: CpuPlan;
  /** Node flags for the Node floor (e.g. --expose-gc for the memory figure). */
  readonly nodeFlags?: readonly string[];
}

function pin(p: PeerStart): { cpu?: number } {
  return p.cpu.pinned ? { cpu: p.cpu.sutCpu } : {};
}

/** Starts nginx in front of `upstream` with a generated config in a fresh temp dir (removed on stop). */
async function startNginx(command: string, upstream: URL, p: PeerStart): Promise<ServerChild> {
  const dir = mkdtempSync(join(tmpdir(), 'voicegate-bench-nginx-'));
  // The worker drops to an unprivileged user when the master runs as root: let it reach its temp paths.
  chmodSync(dir, 0o755);
  const listenPort = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig({ listenPort, upstreamHost: upstream.hostname, upstreamPort: Number(upstream.port), dir }));
  try {
    // -e: the error log of the start itself, before the config is read, stays in the temp dir too.
    const child = await startServer('external', ['--port', String(listenPort), '--', command, '-e', join(dir, 'error.log'), '-p', dir, '-c', conf], { ...pin(p), tree: true });
    return {
      ...child,
      stop: async () => {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}${log ? `\nnginx error.log: ${tail(log, 1000)}` : ''}`);
  }
}

/**
 * Starts Portkey's gateway. 1.15.2 reads its port only from `--port=N` (a separate `--port N` is
 * ignored and it takes 8787), so it gets a free port that way; it binds every interface, not just
 * loopback, which is its own choice. `--headless` leaves out its UI and request-log stream.
 */
async function startPortkey(entry: string, p: PeerStart): Promise<ServerChild> {
  const port = await freePort();
  return startServer('external', ['--port', String(port), '--', process.execPath, entry, `--port=${port}`, '--headless'], { ...pin(p), tree: true });
}

/**
 * Installs (when missing) and checks every peer once per run; afterwards {@link peerStatuses}
 * tells what runs and what is skipped. Portkey is also asked once to relay an audio answer, which
 * it cannot do on Node 20; what it answered is recorded.
 */
export async function preparePeers(p: PeerStart, log: (m: string) => void): Promise<void> {
  nginxLocated ??= locateNginx(log);
  portkeyLocated ??= locatePortkey(log);
  for (const s of peerStatuses()) log(`  peer ${s.name}: ${s.available ? s.detail : `skipped — ${s.detail}`}`);
  if (typeof portkeyLocated !== 'string' && portkeyAudio === undefined) {
    try {
      portkeyAudio = await probePortkeyAudio(portkeyLocated.command, p);
    } catch (err) {
      portkeyAudio = `audio probe failed: ${(err as Error).message.split('\n')[0]}`;
    }
    log(`  portkey audio probe: ${portkeyAudio}`);
  }
}

export function peerStatuses(): PeerStatus[] {
  const of = (name: PeerName, l: Located | string | undefined, how: string): PeerStatus =>
    l === undefined
      ? { name, available: false, detail: 'not prepared' }
      : typeof l === 'string'
        ? { name, available: false, detail: l }
        : { name, available: true, detail: `${l.version} (${how})` };
  return [
    { name: 'node floor', available: true, detail: `node:http + ws, Node ${process.version} (bench/servers/node-proxy.ts)` },
    of('nginx', nginxLocated, 'worker_processes 1, generated by bench/nginx-config.ts'),
    of('portkey', portkeyLocated, `scratch install under ${tmpdir()}, --headless`),
  ];
}

/** What Portkey answered when its upstream answered audio (undefined when not probed). */
export function portkeyAudioProbe(): string | undefined {
  return portkeyAudio;
}

/** Starts one peer in front of `upstream`; undefined (with the reason logged) when it is skipped. */
export async function startPeer(name: PeerName, upstream: URL, p: PeerStart, log: (m: string) => void): Promise<ServerChild | undefined> {
  if (name === 'node floor') {
    return startServer('node-proxy', ['--upstream', upstream.origin], { ...pin(p), nodeFlags: p.nodeFlags ?? [] });
  }
  const l = name === 'nginx' ? nginxLocated : portkeyLocated;
  if (l === undefined || typeof l === 'string') {
    log(`  ${name} skipped: ${l ?? 'not prepared'}`);
    return undefined;
  }
  return name === 'nginx' ? startNginx(l.command, upstream, p) : startPortkey(l.command, p);
}

/** The OpenAI-shaped request Portkey relays to the upstream named in `x-portkey-custom-host`. */
export const PORTKEY_PATH = '/v1/audio/speech';
export const PORTKEY_BODY = JSON.stringify({ model: 'tts-1', input: 'Hi', voice: 'alloy' });
export function portkeyHeaders(upstream: URL): Record<string, string> {
  return { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${upstream.origin}/v1` };
}

function postOnce(url: URL, headers: Record<string, string>, body: string): Promise<{ status: number; type: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** One TTS request through Portkey to a stub upstream that answers `audio/wav`, and the same request direct. */
async function probePortkeyAudio(entry: string, p: PeerStart): Promise<string> {
  const [stubR, portkeyR] = await Promise.allSettled([startServer('stub', ['--body', 'audio'], pin(p)), startPortkey(entry, p)]);
  if (stubR.status === 'rejected' || portkeyR.status === 'rejected') {
    if (portkeyR.status === 'fulfilled') await portkeyR.value.stop();
    if (stubR.status === 'fulfilled') await stubR.value.stop();
    throw stubR.status === 'rejected' ? stubR.reason : (portkeyR as PromiseRejectedResult).reason;
  }
  const stub = stubR.value;
  const portkey = portkeyR.value;
  try {
    const upstream = new URL(`http://127.0.0.1:${stub.port}`);
    const direct = await postOnce(new URL(`${upstream.origin}${PORTKEY_PATH}`), {}, PORTKEY_BODY);
    const via = await postOnce(new URL(`http://127.0.0.1:${portkey.port}${PORTKEY_PATH}`), { ...portkeyHeaders(upstream), authorization: 'Bearer bench-probe' }, PORTKEY_BODY);
    const shown = via.type.includes('json') || via.type.startsWith('text') ? ` ${JSON.stringify(tail(via.body.toString('utf8'), 120))}` : '';
    const relayed = via.status === direct.status && via.body.equals(direct.body);
    return `upstream answered ${direct.status} ${direct.type}, ${direct.body.length} bytes; through Portkey on Node ${process.version} the client got ${via.status} ${via.type || '(no content-type)'}, ${via.body.length} bytes${shown} — audio ${relayed ? 'relayed intact' : 'NOT relayed'}`;
  } finally {
    await Promise.all([portkey.stop(), stub.stop()]);
  }
}
