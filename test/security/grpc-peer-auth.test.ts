/**
 * Issue 9, points 1 and 2: the gRPC services (Check hands out provider keys, StreamAccessLogs bills
 * spans) answer only an authenticated peer — a client certificate from the configured CA, or a
 * connection over the owner-only Unix socket. Clients are built from Envoy's own protos.
 */
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, stat, writeFile, copyFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { request } from 'undici';
import { loadEnvoyProtos, lookup } from '../../protos/envoy-protos.ts';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import type { Authorizer, CheckInput } from '../../extproc/core/decision/types.ts';
import { startExtprocServer, type ExtprocServerOptions } from '../../extproc/adapters/envoy/server.ts';
import { createGrpcAuthorizer, toCheckRequest } from '../../extproc/adapters/envoy/authz-client.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { writeDevCertificates, type DevCertificateResult } from '../../extproc/adapters/files/dev-certificates.ts';
import { envoyUsageServices } from '../../extproc/main/envoy-usage-services.ts';
import { startSimulator, type SimulatorHandle } from '../../simulator/server.ts';
import { devTokens, exampleSnapshot, providerKeys, REPO_ROOT, type Tokens } from '../e2e/stack.ts';
import { MemorySink } from '../usage/helpers.ts';

type ClientCtor = new (addr: string, creds: grpc.ChannelCredentials, opts?: object) => grpc.Client & Record<string, (...a: unknown[]) => unknown>;

const protos = loadEnvoyProtos();
const silent = pino({ level: 'silent' });
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

let dir: string;
let good: DevCertificateResult['files'];
let other: DevCertificateResult['files'];
let simulator: SimulatorHandle;
let snapshot: Snapshot;
let tokens: Tokens;
let keys: { tts: string; stt: string };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vg-peer-auth-'));
  good = writeDevCertificates({ dir: join(dir, 'good'), days: 1 }).files;
  other = writeDevCertificates({ dir: join(dir, 'other'), days: 1 }).files;
  keys = providerKeys(await exampleSnapshot('http://127.0.0.1:9'));
  simulator = await startSimulator({ host: '127.0.0.1', port: 0, profile: 'instant', accounts: [{ key: keys.tts, units: 4 }, { key: keys.stt, units: 4 }] });
  snapshot = await exampleSnapshot(simulator.url);
  tokens = await devTokens(snapshot);
});

afterAll(async () => {
  await simulator.close();
  await rm(dir, { recursive: true, force: true });
});

/** Records what reached the decision, so a refused peer can be shown to have reached nothing. */
class Recording implements Authorizer {
  readonly inputs: CheckInput[] = [];
  constructor(private readonly inner: Authorizer) {}
  check(input: CheckInput) {
    this.inputs.push(input);
    return this.inner.check(input);
  }
}

async function server(opts: Partial<ExtprocServerOptions> = {}) {
  const source = new StaticSnapshotSource(snapshot);
  const authorizer = new Recording(createAuthorizer(source));
  const sink = new MemorySink();
  const s = await startExtprocServer({ host: '127.0.0.1', port: 0, authorizer, source, logger: silent, extraServices: envoyUsageServices(sink, source), ...opts });
  cleanups.push(() => s.close(0));
  return { port: s.port, authorizer, sink };
}

const tlsOf = (f: DevCertificateResult['files'], reloadIntervalMs?: number) => ({ cert: f.serverCert, key: f.serverKey, ca: f.caCert, ...(reloadIntervalMs ? { reloadIntervalMs } : {}) });

async function creds(kind: 'plaintext' | 'no-cert' | 'good' | 'other-ca', files = good): Promise<grpc.ChannelCredentials> {
  if (kind === 'plaintext') return grpc.credentials.createInsecure();
  const ca = await readFile(files.caCert);
  if (kind === 'no-cert') return grpc.credentials.createSsl(ca);
  const f = kind === 'good' ? files : other;
  // The other CA's client still trusts our server: only its own certificate is wrong.
  return grpc.credentials.createSsl(ca, await readFile(f.clientKey), await readFile(f.clientCert));
}

function clients(address: string, c: grpc.ChannelCredentials) {
  const authz = new (lookup<ClientCtor>(protos, 'envoy.service.auth.v3.Authorization'))(address, c);
  const als = new (lookup<ClientCtor>(protos, 'envoy.service.accesslog.v3.AccessLogService'))(address, c);
  cleanups.push(() => authz.close(), () => als.close());
  return { authz, als };
}

type CheckReply = { ok_response?: { headers?: Array<{ header: { key: string; value: string } }> }; status?: { code: number } };

/** bob (pulse only) asks for an STT decision: an allow carries the smallest-stt key. */
function bobCheck(authz: grpc.Client & Record<string, (...a: unknown[]) => unknown>): Promise<CheckReply> {
  const req = toCheckRequest({
    method: 'POST',
    path: '/smallest/waves/v1/pulse/get_text',
    host: 'gw',
    headers: { ':method': 'POST', ':path': '/smallest/waves/v1/pulse/get_text', ':authority': 'gw', authorization: `Bearer ${tokens.bob}` },
  });
  return new Promise((resolve, reject) =>
    authz['Check']!(req, { deadline: Date.now() + 3_000 }, (err: grpc.ServiceError | null, res: CheckReply) => (err ? reject(err) : resolve(res))),
  );
}

/** A fabricated access-log entry: alice, 10,000,000 characters of lightning-v3.1 ($195). */
function forgeUsage(als: grpc.Client & Record<string, (...a: unknown[]) => unknown>): Promise<void> {
  const str = (v: string) => ({ stringValue: v });
  return new Promise((resolve, reject) => {
    const call = als['StreamAccessLogs']!({ deadline: Date.now() + 3_000 }, (err: grpc.ServiceError | null) => (err ? reject(err) : resolve())) as grpc.ClientWritableStream<object>;
    call.on('error', () => {});
    call.write({
      identifier: { node: { id: 'forger' }, log_name: 'voicegate' },
      http_logs: {
        log_entry: [
          {
            common_properties: {
              start_time: { seconds: '1740823200', nanos: 0 },
              duration: { seconds: '1', nanos: 0 },
              metadata: { filter_metadata: { 'envoy.filters.http.ext_authz': { fields: {
                user: str('alice'), provider: str('smallest'), model: str('lightning-v3.1'), model_type: str('tts'), account: str('smallest-tts'), route_kind: str('rest'), endpoint: str('tts.sync'), characters: { numberValue: 10_000_000 },
              } } } },
            },
            request: { request_method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', request_id: 'forged-1' },
            response: { response_code: { value: 200 } },
          },
        ],
      },
    });
    call.end();
  });
}

const keyOf = (r: CheckReply) => r.ok_response?.headers?.find((h) => h.header.key === 'authorization')?.header.value;

describe('mutual TLS on the extproc gRPC server', () => {
  it.each(['plaintext', 'no-cert', 'other-ca'] as const)('a %s client can neither Check nor stream access logs; nothing reaches the decision or the span sink', async (kind) => {
    const s = await server({ tls: tlsOf(good) });
    const { authz, als } = clients(`localhost:${s.port}`, await creds(kind));
    await expect(bobCheck(authz)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    await expect(forgeUsage(als)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(s.authorizer.inputs).toHaveLength(0);
    expect(s.sink.spans).toHaveLength(0);
  });

  it('a client with a certificate from the configured CA gets its answer', async () => {
    const s = await server({ tls: tlsOf(good) });
    const { authz, als } = clients(`localhost:${s.port}`, await creds('good'));
    expect(keyOf(await bobCheck(authz))).toBe(`Bearer ${keys.stt}`);
    await forgeUsage(als);
    expect(s.sink.spans).toHaveLength(1);
  });

  it('picks up certificates rotated on disk, and keeps the old ones while the new files are broken', async () => {
    const live = join(dir, 'live');
    const set = writeDevCertificates({ dir: live, days: 1 }).files;
    const s = await server({ tls: tlsOf(set, 100) });
    const before = clients(`localhost:${s.port}`, await creds('good', set));
    expect(keyOf(await bobCheck(before.authz))).toBe(`Bearer ${keys.stt}`);

    // A half-written rotation (a garbage certificate): the old set stays in use.
    await writeFile(`${set.serverCert}.new`, 'not a certificate');
    await rename(`${set.serverCert}.new`, set.serverCert);
    await new Promise((r) => setTimeout(r, 400));
    const during = clients(`localhost:${s.port}`, await creds('good', set));
    expect(keyOf(await bobCheck(during.authz))).toBe(`Bearer ${keys.stt}`);

    // Rotate to the `other` CA's set: its clients now pass, clients of the old CA no longer do.
    for (const [from, to] of [[other.serverKey, set.serverKey], [other.serverCert, set.serverCert], [other.caCert, set.caCert]] as const) {
      await copyFile(from, `${to}.new`);
      await rename(`${to}.new`, to);
    }
    const after = clients(`localhost:${s.port}`, await creds('good', other));
    let answer: CheckReply | undefined;
    for (let i = 0; i < 30 && !answer; i++) {
      answer = await bobCheck(after.authz).catch(() => undefined);
      if (!answer) await new Promise((r) => setTimeout(r, 100));
    }
    expect(answer && keyOf(answer)).toBe(`Bearer ${keys.stt}`);
    // The old CA's client (trusting the new server CA, so only its own certificate is stale).
    const stale = clients(`localhost:${s.port}`, grpc.credentials.createSsl(await readFile(other.caCert), await readFile(join(live, 'client.key')), await readFile(join(live, 'client.crt'))));
    await expect(bobCheck(stale.authz)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('the edge presents its client certificate and verifies the server (--authz-ca/-cert/-key)', async () => {
    const s = await server({ tls: tlsOf(good) });
    const source = new StaticSnapshotSource(snapshot);
    const client = createGrpcAuthorizer(`localhost:${s.port}`, { timeoutMs: 3_000, tls: { ca: good.caCert, cert: good.clientCert, key: good.clientKey } });
    const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client });
    const noCert = createGrpcAuthorizer(`localhost:${s.port}`, { timeoutMs: 1_000, tls: { ca: good.caCert } });
    const refused = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: noCert });
    cleanups.push(() => client.close(), () => edge.close(), () => noCert.close(), () => refused.close());
    const body = JSON.stringify({ text: 'hello', voice_id: 'magnus' });
    const headers = { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' };
    const ok = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, { method: 'POST', headers, body });
    expect(ok.statusCode).toBe(200);
    await ok.body.arrayBuffer();
    const no = await request(`${refused.url}/smallest/waves/v1/lightning-v3.1/get_speech`, { method: 'POST', headers, body });
    expect(no.statusCode).toBe(503);
    expect(await no.body.json()).toMatchObject({ error: { code: 'authz_unavailable' } });
  });
});

describe('the Unix socket (sidecar) mode', () => {
  it('listens owner-only, and the edge reaches it over unix:', async () => {
    const socket = join(dir, 'extproc.sock');
    const s = await server({ socketPath: socket, host: '0.0.0.0' });
    expect((await stat(socket)).mode & 0o777).toBe(0o600);
    const source = new StaticSnapshotSource(snapshot);
    const client = createGrpcAuthorizer(`unix:${socket}`, { timeoutMs: 3_000 });
    const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer: client });
    cleanups.push(() => client.close(), () => edge.close());
    const r = await request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'over the socket', voice_id: 'magnus' }),
    });
    expect(r.statusCode).toBe(200);
    await r.body.arrayBuffer();
    expect(s.authorizer.inputs).toHaveLength(1);
  });
});

/** The first non-loopback IPv4 address of this machine, if it has one. */
const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '0.0.0.0', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const reachable = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const c = connect(port, host);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });

/** Runs `voicegate extproc` until it logs "extproc ready" or exits. */
async function extproc(args: string[]) {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/voicegate.js'), 'extproc', '--config', 'examples/voicegate.yaml', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  const result = await Promise.race([
    exited.then((code) => ({ code })),
    new Promise<{ code: undefined }>((resolve) => {
      const t = setInterval(() => out.includes('extproc ready') && (clearInterval(t), resolve({ code: undefined })), 50);
    }),
  ]);
  return { ...result, out: () => out };
}

describe('where `voicegate extproc` listens', () => {
  it('refuses plaintext on a non-loopback --host with one line and exit code 1', async () => {
    const r = await extproc(['--host', '0.0.0.0', '--port', String(await freePort()), '--http-port', String(await freePort()), '--spool-dir', join(dir, 'spool1')]);
    expect(r.code).toBe(1);
    expect(r.out()).toContain('refusing to serve the gRPC services without TLS on 0.0.0.0');
  });

  it('with --insecure starts on that host and warns', async () => {
    const grpcPort = await freePort();
    const httpPort = await freePort();
    const r = await extproc(['--host', '0.0.0.0', '--insecure', '--port', String(grpcPort), '--http-port', String(httpPort), '--spool-dir', join(dir, 'spool2')]);
    expect(r.code).toBeUndefined();
    expect(r.out()).toMatch(/"level":40.*plaintext on a non-loopback address \(--insecure\)/);
    if (external) {
      expect(await reachable(external, grpcPort)).toBe(true);
      expect(await reachable(external, httpPort)).toBe(true);
    }
  });

  it.skipIf(!external)('by default binds gRPC and the side port to 127.0.0.1 only (needs a non-loopback address to probe)', async () => {
    const grpcPort = await freePort();
    const httpPort = await freePort();
    const r = await extproc(['--port', String(grpcPort), '--http-port', String(httpPort), '--spool-dir', join(dir, 'spool3')]);
    expect(r.code).toBeUndefined();
    expect(await reachable('127.0.0.1', grpcPort)).toBe(true);
    expect(await reachable('127.0.0.1', httpPort)).toBe(true);
    expect(await reachable(external!, grpcPort)).toBe(false);
    expect(await reachable(external!, httpPort)).toBe(false);
  });

  it('with --tls-* on 0.0.0.0 starts, and answers only a client with a certificate', async () => {
    const grpcPort = await freePort();
    const r = await extproc(['--host', '0.0.0.0', '--port', String(grpcPort), '--http-port', '0', '--tls-cert', good.serverCert, '--tls-key', good.serverKey, '--tls-ca', good.caCert, '--spool-dir', join(dir, 'spool4')]);
    expect(r.code).toBeUndefined();
    const ok = clients(`localhost:${grpcPort}`, await creds('good'));
    expect(keyOf(await bobCheck(ok.authz))).toMatch(/^Bearer /);
    const no = clients(`localhost:${grpcPort}`, await creds('plaintext'));
    await expect(bobCheck(no.authz)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });
});
