/**
 * Through a real edge: one snapshot per exchange (a reload while the body is read changes neither
 * the decision, the upstream nor the price), and no caller credential in any span.
 */
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import type { Authorizer, CheckInput, Decision } from '../../extproc/core/decision/types.ts';
import { composeObservers } from '../../extproc/core/exchange/compose-observers.ts';
import { createUsageObserverFactory } from '../../extproc/core/usage/usage-observer.ts';
import { startEdge } from '../../extproc/adapters/edge/server.ts';
import { FileSpanSink } from '../../extproc/adapters/files/file-sink.ts';
import { handleAccessLogMessage } from '../../extproc/adapters/envoy/access-log-service.ts';
import { EnvoyCorrelator } from '../../extproc/adapters/envoy/access-log-span.ts';
import { recentSnapshots } from '../../extproc/core/usage/recent-snapshots.ts';
import { readBody, startUpstream, until, type Upstream } from '../edge/helpers.ts';
import { MemorySink, silentLogger, testSnapshot } from './helpers.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** testSnapshot with another version, upstream and TTS price. */
function variant(version: number, upstream: string, perThousandChars: string): Snapshot {
  const base = testSnapshot();
  const old = base.models.get('smallest')!.get('lightning-v3.1')!;
  const tts = { ...old, accounts: old.accounts.map((a) => ({ ...a, price: { perThousandChars } })) };
  return {
    ...base,
    version,
    providers: new Map([['smallest', { name: 'smallest', upstream }]]),
    models: new Map([['smallest', new Map([['lightning-v3.1', tts]])]]),
  };
}

/** Allows everything, deciding (like the in-process authorizer) with the snapshot it is given. */
class SnapshotAuthorizer implements Authorizer {
  readonly given: Array<number | undefined> = [];
  async check(input: CheckInput, snapshot?: Snapshot): Promise<Decision> {
    this.given.push(snapshot?.version);
    const path = new URL(input.path, 'http://x');
    path.searchParams.delete('token');
    return {
      kind: 'allow',
      headersToSet: [{ key: 'authorization', value: 'Bearer sk_provider' }],
      headersToRemove: ['x-api-key', 'cookie', 'proxy-authorization'],
      queryParametersToRemove: ['token'],
      metadata: {
        user: 'alice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts', account: 'smallest-tts',
        route_kind: 'rest', endpoint: 'tts.sync', characters: 1000, config_version: snapshot?.version ?? 0,
        upstream_path: `${path.pathname.replace(/^\/smallest/, '')}${path.search}`,
      },
    };
  }
}

async function upstreamNamed(name: string, hits: string[]): Promise<Upstream> {
  const u = await startUpstream(async (req, res) => {
    await readBody(req);
    hits.push(`${name} ${req.url} ${req.headers.authorization}`);
    res.writeHead(200, { 'content-type': 'audio/wav', 'x-request-id': `prov-${name}` }).end('RIFF');
  });
  cleanups.push(() => u.close());
  return u;
}

describe('edge: one snapshot per exchange', () => {
  it('a reload while the body is read changes neither the decision, the upstream nor the price; no credential reaches a span', async () => {
    const hits: string[] = [];
    const a = await upstreamNamed('a', hits);
    const b = await upstreamNamed('b', hits);
    const first = variant(7, a.url, '0.0195');
    const second = variant(8, b.url, '1');
    const source = new StaticSnapshotSource(first);
    const authorizer = new SnapshotAuthorizer();
    const sink = new MemorySink();
    const dir = mkdtempSync(join(tmpdir(), 'vg-snap-'));
    const file = new FileSpanSink(join(dir, 'spans.jsonl'), silentLogger);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const observe = composeObservers(createUsageObserverFactory({ sink }), createUsageObserverFactory({ sink: file }))!;
    const edge = await startEdge({ host: '127.0.0.1', port: 0, source, authorizer, observe });
    cleanups.push(() => edge.close());

    const secrets = ['jwt_SECRET_header', 'key_SECRET_x_api', 'cookie_SECRET_c', 'jwt_SECRET_query'];
    const body = JSON.stringify({ text: 'x'.repeat(1000), voice_id: 'magnus' });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${edge.url}/smallest/waves/v1/lightning-v3.1/get_speech?token=${secrets[3]}&sample_rate=8000`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          authorization: `Bearer ${secrets[0]}`,
          'x-api-key': secrets[1],
          cookie: `session=${secrets[2]}`,
        },
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      // A slow body: the edge has taken the request (and its snapshot) but not yet decided.
      req.write(body.slice(0, 20));
      setTimeout(() => {
        expect(source.swap(second)).toBe(true);
        req.end(body.slice(20));
      }, 150);
    });
    expect(status).toBe(200);
    await until(() => sink.spans.length === 1, 2000, 'span');
    await file.close();

    expect(authorizer.given).toEqual([7]);
    expect(hits).toEqual(['a /waves/v1/lightning-v3.1/get_speech?sample_rate=8000 Bearer sk_provider']);
    const span = sink.spans[0]!;
    expect(span).toMatchObject({ configVersion: 7, characters: 1000, costUsd: '0.0195', serverAddress: new URL(a.url).host, providerRequestId: 'prov-a' });

    const written = readFileSync(join(dir, 'spans.jsonl'), 'utf8');
    expect(written.trim().split('\n')).toHaveLength(1);
    for (const text of [JSON.stringify(span), written]) {
      for (const secret of secrets) expect(text).not.toContain(secret);
      expect(text).not.toContain('sk_provider');
      expect(text).not.toContain('token=');
    }
  });
});

describe('Envoy: the snapshot that decided prices the access-log entry', () => {
  it('uses the snapshot config_version names while it is held, else the current one', () => {
    const source = new StaticSnapshotSource(variant(7, 'http://a.example', '0.0195'));
    const snapshotFor = recentSnapshots(source, 2);
    source.swap(variant(8, 'http://b.example', '1'));
    const sink = new MemorySink();
    const entry = (version: number) => ({
      common_properties: {
        start_time: { seconds: 1740823200, nanos: 0 },
        duration: { seconds: 1, nanos: 0 },
        metadata: { filter_metadata: { 'envoy.filters.http.ext_authz': { fields: {
          provider: { kind: 'stringValue', stringValue: 'smallest' }, model: { kind: 'stringValue', stringValue: 'lightning-v3.1' },
          model_type: { kind: 'stringValue', stringValue: 'tts' }, endpoint: { kind: 'stringValue', stringValue: 'tts.sync' },
          route_kind: { kind: 'stringValue', stringValue: 'rest' }, characters: { kind: 'numberValue', numberValue: 1000 },
          config_version: { kind: 'numberValue', numberValue: version },
        } } } },
      },
      request: { request_method: 'POST', path: '/smallest/waves/v1/lightning-v3.1/get_speech', request_id: `r${version}`, request_body_bytes: 1020 },
      response: { response_code: { value: 200 } },
    });
    handleAccessLogMessage({ http_logs: { log_entry: [entry(7), entry(8), entry(3)] } }, sink, new EnvoyCorrelator(), { snapshot: snapshotFor });
    expect(sink.spans.map((s) => [s.configVersion, s.costUsd, s.serverAddress])).toEqual([
      [7, '0.0195', 'a.example'],
      [8, '1', 'b.example'],
      [3, '1', 'b.example'],
    ]);
  });
});
