import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { at, cluster, ENVOY_FILES, readYaml, REPO_ROOT, routes } from './envoy-files.ts';
import { pickRoute, rewrittenPath, type RouteEntry, type RouteRequest } from './route-picker.ts';

const BODY = { max_request_bytes: 65536, allow_partial_message: true, pack_as_bytes: true };
const WS = { upgrade: 'websocket', connection: 'Upgrade' };

/** What ext_authz buffers for Check on this route: the per-route body settings, if any. */
function bodySettings(route: RouteEntry): unknown {
  const authz = route.typed_per_filter_config?.['envoy.filters.http.ext_authz'] as
    | { check_settings?: { with_request_body?: unknown; disable_request_body_buffering?: boolean } }
    | undefined;
  return authz?.check_settings?.with_request_body;
}

interface Expectation {
  req: RouteRequest;
  name: string;
  upstreamPath: string;
  body: boolean;
  /** `0s` for streams, a finite value for REST. */
  timeout: string;
  /** Default `smallest` (the provider); TTS WebSockets go to the voicegate edge, which checks frames. */
  cluster?: string;
}

const EDGE = 'voicegate_edge';

const get = (path: string, headers?: Record<string, string>): RouteRequest => ({ method: 'GET', path, ...(headers ? { headers } : {}) });
const post = (path: string): RouteRequest => ({ method: 'POST', path });

const CASES: Expectation[] = [
  // Lightning, G2 model paths
  { req: post('/smallest/waves/v1/lightning-v3.1/get_speech'), name: 'tts-sync', upstreamPath: '/waves/v1/lightning-v3.1/get_speech', body: true, timeout: '120s' },
  { req: post('/smallest/waves/v1/lightning-v3.1/stream'), name: 'tts-sse', upstreamPath: '/waves/v1/lightning-v3.1/stream', body: true, timeout: '0s' },
  // TTS WebSockets: to the edge with the public path unchanged (the edge rewrites it itself)
  { req: get('/smallest/waves/v1/lightning-v3.1/get_speech/stream?timeout=60', WS), name: 'tts-ws', upstreamPath: '/smallest/waves/v1/lightning-v3.1/get_speech/stream?timeout=60', body: false, timeout: '0s', cluster: EDGE },
  // Lightning, G3 unified
  { req: post('/smallest/waves/v1/tts'), name: 'tts-sync', upstreamPath: '/waves/v1/tts', body: true, timeout: '120s' },
  { req: post('/smallest/waves/v1/tts/'), name: 'tts-sync', upstreamPath: '/waves/v1/tts/', body: true, timeout: '120s' },
  { req: post('/smallest/waves/v1/tts/live'), name: 'tts-live-sse', upstreamPath: '/waves/v1/tts/live', body: true, timeout: '0s' },
  { req: get('/smallest/waves/v1/tts/live?token=abc', WS), name: 'tts-live-ws', upstreamPath: '/smallest/waves/v1/tts/live?token=abc', body: false, timeout: '0s', cluster: EDGE },
  { req: get('/smallest/waves/v1/tts/live', WS), name: 'tts-live-ws', upstreamPath: '/smallest/waves/v1/tts/live', body: false, timeout: '0s', cluster: EDGE },
  // Lightning, G1 (npm smallestai@1.0.1): /api/v1/X becomes /waves/v1/X
  { req: post('/smallest/api/v1/lightning/get_speech'), name: 'tts-sync', upstreamPath: '/waves/v1/lightning/get_speech', body: true, timeout: '120s' },
  { req: post('/smallest/api/v1/lightning-large/get_speech'), name: 'tts-sync', upstreamPath: '/waves/v1/lightning-large/get_speech', body: true, timeout: '120s' },
  { req: post('/smallest/api/v1/lightning-v3.1/stream'), name: 'tts-sse', upstreamPath: '/waves/v1/lightning-v3.1/stream', body: true, timeout: '0s' },
  { req: get('/smallest/api/v1/lightning-v3.1/get_speech/stream', WS), name: 'tts-ws', upstreamPath: '/smallest/api/v1/lightning-v3.1/get_speech/stream', body: false, timeout: '0s', cluster: EDGE },
  // Pulse: uploads never send their body to Check; streams have no overall timeout
  { req: post('/smallest/waves/v1/pulse/get_text?language=en&word_timestamps=true'), name: 'stt-rest', upstreamPath: '/waves/v1/pulse/get_text?language=en&word_timestamps=true', body: false, timeout: '120s' },
  { req: post('/smallest/waves/v1/pulse-pro/get_text'), name: 'stt-rest', upstreamPath: '/waves/v1/pulse-pro/get_text', body: false, timeout: '120s' },
  { req: post('/smallest/waves/v1/stt/?model=pulse'), name: 'stt-rest', upstreamPath: '/waves/v1/stt/?model=pulse', body: false, timeout: '120s' },
  { req: post('/smallest/api/v1/pulse/get_text'), name: 'stt-rest', upstreamPath: '/waves/v1/pulse/get_text', body: false, timeout: '120s' },
  { req: get('/smallest/waves/v1/pulse/get_text?language=multi&encoding=linear16', WS), name: 'stt-ws', upstreamPath: '/waves/v1/pulse/get_text?language=multi&encoding=linear16', body: false, timeout: '0s' },
  { req: get('/smallest/waves/v1/stt/live?model=pulse', WS), name: 'stt-live-ws', upstreamPath: '/waves/v1/stt/live?model=pulse', body: false, timeout: '0s' },
  // Everything else passes through with a finite timeout and no body
  { req: get('/smallest/waves/v1/health'), name: 'smallest', upstreamPath: '/waves/v1/health', body: false, timeout: '120s' },
  { req: get('/smallest/api/v1/lightning/get_speech'), name: 'smallest-api-v1', upstreamPath: '/waves/v1/lightning/get_speech', body: false, timeout: '120s' },
  // The voice catalogue: REST, rewritten like the other endpoints, the upload never sent to Check
  { req: get('/smallest/waves/v1/lightning-v3.1/get_voices'), name: 'voices', upstreamPath: '/waves/v1/lightning-v3.1/get_voices', body: false, timeout: '120s' },
  { req: get('/smallest/api/v1/lightning/get_voices'), name: 'voices', upstreamPath: '/waves/v1/lightning/get_voices', body: false, timeout: '120s' },
  { req: get('/smallest/api/v1/lightning-large/get_cloned_voices'), name: 'voices', upstreamPath: '/waves/v1/lightning-large/get_cloned_voices', body: false, timeout: '120s' },
  { req: post('/smallest/api/v1/lightning-large/add_voice'), name: 'voices', upstreamPath: '/waves/v1/lightning-large/add_voice', body: false, timeout: '120s' },
  { req: { method: 'DELETE', path: '/smallest/api/v1/lightning-large' }, name: 'voice-delete', upstreamPath: '/waves/v1/lightning-large', body: false, timeout: '120s' },
  // A GET on a JSON TTS path is not a TTS request: no body, finite timeout
  { req: get('/smallest/waves/v1/lightning-v3.1/get_speech'), name: 'smallest', upstreamPath: '/waves/v1/lightning-v3.1/get_speech', body: false, timeout: '120s' },
];

describe.each(ENVOY_FILES)('%s routes requests as Envoy would', (file) => {
  const table = routes(readYaml(file));

  it.each(CASES.map((c) => [`${c.req.method} ${c.req.path}`, c] as const))('%s', (_label, c) => {
    const route = pickRoute(table, c.req);
    expect(route?.name).toBe(c.name);
    expect(rewrittenPath(route!, c.req.path)).toBe(c.upstreamPath);
    expect(bodySettings(route!)).toEqual(c.body ? BODY : undefined);
    expect(route!.route?.timeout).toBe(c.timeout);
    if (c.timeout === '0s') expect(route!.route?.idle_timeout).toMatch(/^[1-9]\d*s$/);
    expect(route!.route?.cluster).toBe(c.cluster ?? 'smallest');
  });

  it('hands TTS WebSockets to the voicegate edge untouched: no ext_authz (the caller\'s JWT stays), no ext_proc (one span, the edge\'s)', () => {
    const edgeRoutes = table.filter((r) => r.route?.cluster === EDGE);
    expect(edgeRoutes.map((r) => r.name)).toEqual(['tts-ws', 'tts-live-ws']);
    for (const r of edgeRoutes) {
      expect(r.typed_per_filter_config?.['envoy.filters.http.ext_authz']).toMatchObject({ disabled: true });
      expect(r.typed_per_filter_config?.['envoy.filters.http.ext_proc']).toMatchObject({ disabled: true });
    }
    // A POST to /tts/live is SSE, whose body Check reads: it stays on the provider route.
    expect(pickRoute(table, post('/smallest/waves/v1/tts/live'))?.route?.cluster).toBe('smallest');
  });

  it('reaches the edge over HTTP/1.1 (upgrades) on the loopback sidecar address, health-checked on /readyz', () => {
    const edge = cluster(readYaml(file), EDGE);
    expect(at(edge, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions', 'explicit_http_config')).toEqual({
      http_protocol_options: {},
    });
    expect(at(edge, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address')).toEqual(EDGE_ADDRESS);
    expect(at(edge, 'health_checks', 0, 'http_health_check')).toEqual({ path: '/readyz' });
    expect(edge['transport_socket']).toBeUndefined();
  });

  it('answers /healthz itself, and nothing outside /smallest/ reaches the provider', () => {
    expect(pickRoute(table, get('/healthz'))?.direct_response?.status).toBe(200);
    expect(pickRoute(table, get('/healthz?probe=1'))?.name).toBe('healthz');
    expect(pickRoute(table, get('/waves/v1/tts'))).toBeUndefined();
    expect(pickRoute(table, get('/smallest'))).toBeUndefined();
    expect(pickRoute(table, get('/other/waves/v1/tts'))).toBeUndefined();
  });

  it('sends the request body to Check only on the POST TTS JSON routes, and explicitly never on STT uploads', () => {
    const withBody = table.filter((r) => bodySettings(r) !== undefined);
    expect(withBody.map((r) => r.name)).toEqual(['tts-live-sse', 'tts-sse', 'tts-sync']);
    for (const r of withBody) {
      expect(r.match.headers).toEqual([{ name: ':method', string_match: { exact: 'POST' } }]);
    }
    const stt = table.find((r) => r.name === 'stt-rest')!;
    expect(stt.typed_per_filter_config?.['envoy.filters.http.ext_authz']).toMatchObject({
      check_settings: { disable_request_body_buffering: true },
    });
  });

  it('gives every streaming route timeout 0s with an idle bound, and every other proxied route a finite timeout', () => {
    for (const r of table.filter((x) => x.route)) {
      const streaming = /-(ws|sse)$/.test(r.name ?? '');
      if (streaming) {
        expect(r.route?.timeout, r.name).toBe('0s');
        expect(r.route?.idle_timeout, r.name).toMatch(/^[1-9]\d*s$/);
      } else {
        expect(r.route?.timeout, r.name).toMatch(/^[1-9]\d*s$/);
      }
    }
  });
});

const EDGE_ADDRESS = { address: '127.0.0.1', port_value: 8090 };
type Doc = { kind?: string; metadata?: { name?: string }; spec?: { template?: { spec?: { containers?: { name: string; args?: string[] }[] } } } };

describe('the edge Envoy hands TTS WebSockets to runs beside it, where the cluster points', () => {
  const listens = (args: readonly string[]) => ({
    command: args[0],
    host: args[args.indexOf('--host') + 1],
    port: Number(args[args.indexOf('--port') + 1]),
  });
  const expected = { command: 'edge', host: EDGE_ADDRESS.address, port: EDGE_ADDRESS.port_value };

  it('docker-compose.yml: service `edge` in Envoy\'s network namespace', () => {
    const compose = parse(readFileSync(`${REPO_ROOT}docker-compose.yml`, 'utf8')) as { services: Record<string, { command?: string[]; network_mode?: string }> };
    const edge = compose.services['edge']!;
    expect(edge.network_mode).toBe('service:envoy');
    expect(listens(edge.command ?? [])).toEqual(expected);
  });

  it('Kubernetes: a sidecar container of the Envoy pod', () => {
    const docs = readFileSync(`${REPO_ROOT}deploy/kubernetes/envoy.yaml`, 'utf8').split(/^---$/m).map((d) => parse(d) as Doc);
    const pod = docs.find((d) => d.kind === 'Deployment' && d.metadata?.name === 'envoy')!;
    const edge = pod.spec?.template?.spec?.containers?.find((c) => c.name === 'edge');
    expect(listens(edge?.args ?? [])).toEqual(expected);
  });
});

describe('the route picker follows Envoy matching rules', () => {
  const table: RouteEntry[] = [
    { name: 'regex', match: { safe_regex: { regex: '/a/[^/]+' } }, route: { regex_rewrite: { pattern: { regex: '^/a/(x)' }, substitution: '/b/\\1' } } },
    { name: 'prefix', match: { prefix: '/a/' }, route: { prefix_rewrite: '/z/' } },
  ];

  it('needs a full regex match, ignores the query when matching and keeps it when rewriting', () => {
    expect(pickRoute(table, get('/a/x?y=/z'))?.name).toBe('regex');
    expect(pickRoute(table, get('/a/x/more'))?.name).toBe('prefix');
    expect(rewrittenPath(table[0]!, '/a/x?q=1')).toBe('/b/x?q=1');
    expect(rewrittenPath(table[1]!, '/a/x/more?q=1')).toBe('/z/x/more?q=1');
  });

  it('treats :method as a header', () => {
    const onlyPost: RouteEntry[] = [{ match: { prefix: '/', headers: [{ name: ':method', string_match: { exact: 'POST' } }] } }];
    expect(pickRoute(onlyPost, post('/x'))).toBeDefined();
    expect(pickRoute(onlyPost, get('/x'))).toBeUndefined();
  });
});
