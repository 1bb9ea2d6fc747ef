/**
 * Shared fixtures for the authorization tests: per-run signing keys, a config document built from
 * them, hand-made JWTs, a JWKS server that counts its fetches, and an Envoy-shaped ext_authz client
 * built from Envoy's real protos.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import type { Snapshot } from '../../extproc/core/config/snapshot.ts';
import { fromStruct, type ProtoStruct } from '../../extproc/adapters/envoy/struct.ts';
import { loadEnvoyProtos, lookup } from '../../protos/envoy-protos.ts';

export type TestAlg = 'RS256' | 'ES256' | 'EdDSA';
export const ALGS: readonly TestAlg[] = ['RS256', 'ES256', 'EdDSA'];

export interface TestKey {
  readonly alg: TestAlg;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** Public JWK with `kid`, `alg` and `use`, as an IdP publishes it. */
  readonly jwk: JWK;
}

/** A fresh key pair for `alg`, generated per test run. */
export async function makeKey(alg: TestAlg, kid = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

export const AUDIENCE = 'voicegate';
export const nowSec = (): number => Math.floor(Date.now() / 1000);

/** Standard claims for `user`, valid for an hour; `extra` overrides or adds claims. */
export function claims(issuer: string, user: string, teams: string[] = [], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = nowSec();
  return { iss: issuer, aud: AUDIENCE, sub: user, teams, iat: now, exp: now + 3600, ...extra };
}

/** Signs `payload` as given (no defaults added), with the key's `kid` in the header. */
export async function sign(key: TestKey, payload: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, typ: 'JWT', kid: key.kid, ...header }).sign(key.privateKey);
}

export const b64url = (value: string | Buffer): string => Buffer.from(value).toString('base64url');

/** A JWKS endpoint whose key set can be swapped and whose fetches are counted per path. */
export interface JwksServer {
  readonly url: string;
  serve(path: string, keys: JWK[]): void;
  fetches(path: string): number;
  close(): Promise<void>;
}

export async function startJwksServer(): Promise<JwksServer> {
  const sets = new Map<string, JWK[]>();
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const keys = sets.get(path);
    if (!keys) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    serve: (path, keys) => void sets.set(path, keys),
    fetches: (path) => counts.get(path) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Provider keys the config resolves from the environment; tests look for them in answers. */
export interface AccountKeys {
  readonly tts: string;
  readonly stt: string;
}

export function accountKeys(): AccountKeys {
  return { tts: `sk_tts_${randomBytes(12).toString('hex')}`, stt: `sk_stt_${randomBytes(12).toString('hex')}` };
}

export interface IssuerSpec {
  readonly issuer: string;
  /** The config's `name`: qualifies the issuer's users and teams (`remote:alice`). */
  readonly name?: string;
  readonly keys?: readonly TestKey[];
  readonly jwksUrl?: string;
  readonly clockSkewSeconds?: number;
}

/**
 * The example config's policy (team `voice` → every model, `bob` → `pulse` only) over the given
 * issuers, written as JSON (which is YAML) and loaded through the real loader. A named issuer's
 * `voice` and `bob` are granted the same under their qualified names (`remote:voice`).
 */
export async function loadTestSnapshot(issuers: readonly IssuerSpec[], keys: AccountKeys): Promise<Snapshot> {
  const qualified = (n: string): string[] => [n, ...issuers.flatMap((i) => (i.name ? [`${i.name}:${n}`] : []))];
  const doc = {
    version: 1,
    identity: {
      issuers: issuers.map((i) => ({
        issuer: i.issuer,
        ...(i.name ? { name: i.name } : {}),
        audiences: [AUDIENCE, 'another-gateway'],
        ...(i.jwksUrl ? { jwks_url: i.jwksUrl } : { jwks: { keys: (i.keys ?? []).map((k) => k.jwk) } }),
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        claims: { user: 'sub', teams: 'teams', roles: 'roles' },
        clock_skew_seconds: i.clockSkewSeconds ?? 30,
      })),
    },
    providers: { smallest: { upstream: 'http://127.0.0.1:9', default_models: { tts: 'lightning-v3.1', stt: 'pulse' } } },
    accounts: [
      { name: 'smallest-tts', provider: 'smallest', token: 'env:VG_TEST_TTS_KEY', concurrency: 4, collaborators: { teams: qualified('voice') } },
      { name: 'smallest-stt', provider: 'smallest', token: 'env:VG_TEST_STT_KEY', concurrency: 4, collaborators: { users: qualified('bob'), teams: qualified('voice') } },
    ],
    models: [
      { name: 'lightning-v3.1', type: 'tts', account: 'smallest-tts', aliases: ['lightning_v3.1', 'lightning_v3.1_pro'] },
      { name: 'lightning', type: 'tts', account: 'smallest-tts' },
      { name: 'lightning-large', type: 'tts', account: 'smallest-tts' },
      { name: 'lightning-v2', type: 'tts', account: 'smallest-tts' },
      { name: 'pulse', type: 'stt', account: 'smallest-stt' },
    ],
  };
  return loadSnapshotFromText(JSON.stringify(doc, null, 2), {
    origin: 'test',
    baseDir: process.cwd(),
    env: { VG_TEST_TTS_KEY: keys.tts, VG_TEST_STT_KEY: keys.stt },
  });
}

/** A request as a client sends it to Envoy. */
export interface ClientRequest {
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export interface DecodedHeaderOption {
  header: { key: string; value: string };
  append_action: string;
}

/** `CheckResponse` as proto-loader decodes it with voicegate's loader options. */
export interface DecodedCheckResponse {
  status: { code: number; message: string };
  http_response?: 'ok_response' | 'denied_response';
  ok_response?: {
    headers: DecodedHeaderOption[];
    headers_to_remove: string[];
    query_parameters_to_remove: string[];
  };
  denied_response?: {
    status: { code: string };
    headers: DecodedHeaderOption[];
    body: string;
  };
  dynamic_metadata: ProtoStruct | null;
}

/** An Envoy stand-in: builds `CheckRequest`s the way Envoy fills them and calls Check over the network. */
export interface EnvoyClient {
  check(req: ClientRequest): Promise<DecodedCheckResponse>;
  /** Sends `request` as the CheckRequest, unmodified. */
  checkRaw(request: unknown): Promise<DecodedCheckResponse>;
  health(service: string): Promise<{ status: string }>;
  close(): void;
}

type Unary<Req, Res> = (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void;

export function envoyClient(port: number): EnvoyClient {
  const protos = loadEnvoyProtos();
  const Authz = lookup<grpc.ServiceClientConstructor>(protos, 'envoy.service.auth.v3.Authorization');
  const Health = lookup<grpc.ServiceClientConstructor>(protos, 'grpc.health.v1.Health');
  const target = `127.0.0.1:${port}`;
  const authz = new Authz(target, grpc.credentials.createInsecure());
  const health = new Health(target, grpc.credentials.createInsecure(), { channelOverride: authz.getChannel() });
  const check = (authz as unknown as { Check: Unary<unknown, DecodedCheckResponse> }).Check.bind(authz);
  const healthCheck = (health as unknown as { Check: Unary<{ service: string }, { status: string }> }).Check.bind(health);
  const call = <Req, Res>(fn: Unary<Req, Res>, req: Req) =>
    new Promise<Res>((resolve, reject) =>
      fn(req, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res as Res))),
    );
  return {
    check: (req) => call(check, envoyCheckRequest(req)),
    checkRaw: (request) => call(check, request),
    health: (service) => call(healthCheck, { service }),
    close: () => {
      health.close();
      authz.close();
    },
  };
}

/** `CheckRequest` as Envoy builds it: pseudo-headers in `headers`, `path` with query, body as `raw_body`. */
export function envoyCheckRequest(req: ClientRequest): unknown {
  const id = randomUUID();
  const headers: Record<string, string> = {
    ':method': req.method,
    ':path': req.path,
    ':authority': 'gateway.test:8080',
    ':scheme': 'http',
    'x-request-id': id,
    'user-agent': 'voicegate-test',
  };
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  return {
    attributes: {
      source: { address: { socket_address: { address: '127.0.0.1', port_value: 40000 } } },
      request: {
        time: { seconds: String(nowSec()), nanos: 0 },
        http: {
          id,
          method: req.method,
          path: req.path,
          host: 'gateway.test:8080',
          scheme: 'http',
          protocol: 'HTTP/1.1',
          headers,
          ...(req.body !== undefined ? { raw_body: Buffer.from(req.body, 'utf8'), size: String(Buffer.byteLength(req.body)) } : {}),
        },
      },
    },
  };
}

/** The dynamic metadata of a response as a plain record. */
export function metadataOf(res: DecodedCheckResponse): Record<string, unknown> {
  return fromStruct(res.dynamic_metadata);
}
