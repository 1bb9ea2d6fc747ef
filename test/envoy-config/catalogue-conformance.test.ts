/**
 * The endpoint catalogue is the one source of truth for routes: every spec, in every public path
 * generation, is walked through each shipped Envoy config's route table (as Envoy would pick the
 * route) and through the edge's route lookup, and the two must agree on what the spec says:
 * whether Check sees the body, the route and idle timeouts, and the path the provider receives.
 * TTS WebSocket specs are served by the voicegate edge (cluster `voicegate_edge`, which checks each
 * frame's model): their routes send the public path there unchanged, with ext_authz and ext_proc
 * off (the edge decides and meters them). Mutated copies of envoy.yaml show that each kind of
 * disagreement is caught.
 */
import { describe, expect, it } from 'vitest';
import {
  CATALOGUES,
  PASSTHROUGH_ROUTE,
  STREAM_IDLE_TIMEOUT_MS,
  matchEndpoint,
  parsePublicPath,
  routeTimeouts,
  type EndpointSpec,
  type ProviderCatalogue,
} from '../../extproc/core/catalogue/endpoints.ts';
import { ENVOY_FILES, connectionManager, httpFilters, readYaml, routes } from './envoy-files.ts';
import { pickRoute, rewrittenPath, type RouteEntry, type RouteRequest } from './route-picker.ts';

const PROVIDER = 'smallest';
const catalogue = CATALOGUES.get(PROVIDER) as ProviderCatalogue;
const MODELS = { tts: 'lightning-v3.1', stt: 'pulse' } as const;
const WS_HEADERS = { upgrade: 'websocket', connection: 'Upgrade' };
/** The cluster of the voicegate edge, and of the provider. */
const EDGE_CLUSTER = 'voicegate_edge';
const PROVIDER_CLUSTER = 'smallest';
/** Envoy cannot see frames, and Lightning serves the model a TTS frame names: the edge checks them. */
const servedByEdge = (spec: EndpointSpec): boolean => spec.kind === 'websocket' && spec.type === 'tts';

/** RouteAction.timeout when unset (Envoy's documented default). */
const ENVOY_DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

/** `120s`, `0s`, `0.2s` → ms; undefined stays undefined. */
function durationMs(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(String(value));
  if (!m) throw new Error(`unsupported duration ${String(value)}`);
  return Math.round(Number(m[1]) * 1000);
}

/** One concrete provider path per spec, built from its own pattern with a concrete model. */
function samplePath(spec: EndpointSpec): string {
  const model = spec.type ? MODELS[spec.type] : 'none';
  const path = spec.pattern.source
    .replace(/^\^|\$$/g, '')
    .replace('([^/]+)', encodeURIComponent(model))
    .replace(/\\\/\?/g, '')
    .replace(/\\\//g, '/');
  if (!/^[\w/.%-]+$/.test(path)) throw new Error(`cannot build a sample path for ${spec.id} from ${spec.pattern.source}`);
  return spec.model === 'query' ? `${path}?model=${model}` : path;
}

/** Does ext_authz buffer the body for Check on this route (per-route settings over the filter's)? */
function sendsBodyToCheck(config: unknown, route: RouteEntry): boolean {
  const perRoute = route.typed_per_filter_config?.['envoy.filters.http.ext_authz'] as
    | { disabled?: boolean; check_settings?: { with_request_body?: unknown; disable_request_body_buffering?: boolean } }
    | undefined;
  if (perRoute?.disabled) return false;
  if (perRoute?.check_settings?.disable_request_body_buffering) return false;
  if (perRoute?.check_settings?.with_request_body !== undefined) return true;
  const filter = httpFilters(config).find((f) => f.name === 'envoy.filters.http.ext_authz');
  return filter?.typed_config['with_request_body'] !== undefined;
}

interface Walk {
  readonly label: string;
  readonly req: RouteRequest;
  /** The cluster the route must send it to. */
  readonly cluster: string;
  /** What the provider must receive (path with query). */
  readonly upstream: string;
  readonly readsBody: boolean;
  readonly routeTimeoutMs: number;
  readonly idleTimeoutMs: number | undefined;
}

/** Every spec × generation, plus paths no spec describes (the catch-all routes' facts). */
function walks(): Walk[] {
  const out: Walk[] = [];
  for (const spec of catalogue.endpoints) {
    const upstream = samplePath(spec);
    for (const g of catalogue.generations) {
      if (!upstream.startsWith(g.upstreamPrefix)) throw new Error(`${spec.id}: ${upstream} is outside ${g.upstreamPrefix}`);
      const path = `/${PROVIDER}${g.publicPrefix}${upstream.slice(g.upstreamPrefix.length)}`;
      out.push({
        label: `${spec.id} ${spec.method} ${path}`,
        req: { method: spec.method, path, ...(spec.kind === 'websocket' ? { headers: WS_HEADERS } : {}) },
        cluster: servedByEdge(spec) ? EDGE_CLUSTER : PROVIDER_CLUSTER,
        // The edge takes public paths and rewrites them itself (checked above, parsePublicPath).
        upstream: servedByEdge(spec) ? path : upstream,
        readsBody: spec.readsBody,
        routeTimeoutMs: spec.routeTimeoutMs,
        idleTimeoutMs: spec.idleTimeoutMs,
      });
    }
  }
  for (const g of catalogue.generations) {
    for (const [method, rest] of [['GET', 'lightning-v3.1/get_pronunciation_dicts'], ['GET', 'lightning-v3.1/get_speech'], ['DELETE', 'voices/v1']] as const) {
      const path = `/${PROVIDER}${g.publicPrefix}${rest}`;
      out.push({
        label: `passthrough ${method} ${path}`,
        req: { method, path },
        cluster: PROVIDER_CLUSTER,
        upstream: `${g.upstreamPrefix}${rest}`,
        readsBody: false,
        routeTimeoutMs: PASSTHROUGH_ROUTE.routeTimeoutMs,
        idleTimeoutMs: PASSTHROUGH_ROUTE.idleTimeoutMs,
      });
    }
  }
  return out;
}

/** Every disagreement between the catalogue and `config`'s routes, one line each; [] when they agree. */
function disagreements(config: unknown): string[] {
  const table = routes(config);
  const problems: string[] = [];
  const streamIdle = durationMs(connectionManager(config)['stream_idle_timeout']);
  if (streamIdle !== STREAM_IDLE_TIMEOUT_MS) {
    problems.push(`connection manager: stream_idle_timeout ${streamIdle} ms, catalogue ${STREAM_IDLE_TIMEOUT_MS} ms`);
  }
  for (const w of walks()) {
    const route = pickRoute(table, w.req);
    if (!route?.route) {
      problems.push(`${w.label}: no proxying route`);
      continue;
    }
    const at = `${w.label} (route ${route.name})`;
    if (route.route.cluster !== w.cluster) problems.push(`${at}: cluster ${String(route.route.cluster)}, expected ${w.cluster}`);
    if (w.cluster === EDGE_CLUSTER) {
      // The caller's JWT must reach the edge (ext_authz would swap it for the provider key) and the
      // edge's span is the session's only one (ext_proc would open a second).
      for (const filter of ['envoy.filters.http.ext_authz', 'envoy.filters.http.ext_proc']) {
        const perRoute = route.typed_per_filter_config?.[filter] as { disabled?: boolean } | undefined;
        if (perRoute?.disabled !== true) problems.push(`${at}: ${filter} not disabled on an edge route`);
      }
    }
    const body = sendsBodyToCheck(config, route);
    if (body !== w.readsBody) problems.push(`${at}: body to Check ${body}, spec readsBody ${w.readsBody}`);
    const timeout = durationMs(route.route.timeout) ?? ENVOY_DEFAULT_ROUTE_TIMEOUT_MS;
    if (timeout !== w.routeTimeoutMs) problems.push(`${at}: timeout ${timeout} ms, spec ${w.routeTimeoutMs} ms`);
    const idle = durationMs(route.route.idle_timeout);
    if (idle !== w.idleTimeoutMs) problems.push(`${at}: idle_timeout ${idle} ms, spec ${w.idleTimeoutMs} ms`);
    const rewritten = rewrittenPath(route, w.req.path);
    if (rewritten !== w.upstream) problems.push(`${at}: rewritten to ${rewritten}, spec upstream ${w.upstream}`);
  }
  return problems;
}

describe('the catalogue describes every spec the way the gateway itself reads it', () => {
  it.each(walks().map((w) => [w.label, w] as const))('%s', (_label, w) => {
    const parsed = parsePublicPath(w.req.path);
    const spec = matchEndpoint(catalogue, w.req.method, parsed?.upstreamPath ?? '')?.spec;
    // What the provider receives: for edge routes, the edge's own rewrite of the public path.
    const rawUpstream = (w.cluster === EDGE_CLUSTER && spec ? samplePath(spec) : w.upstream).split('?')[0] ?? '';
    // The decision's rewrite (normalize) yields the same upstream path as Envoy's should.
    expect(parsed?.upstreamPath).toBe(rawUpstream);
    const matched = matchEndpoint(catalogue, w.req.method, rawUpstream);
    if (w.label.startsWith('passthrough')) expect(matched).toBeUndefined();
    else expect(w.label.startsWith(`${matched?.spec.id} `)).toBe(true);
    // The edge bounds the exchange with exactly the spec's (or the catch-all's) values.
    expect(routeTimeouts(w.req.method, w.req.path)).toEqual({
      routeTimeoutMs: w.routeTimeoutMs,
      idleTimeoutMs: w.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS,
    });
  });

  it('covers every spec in every generation', () => {
    const ids = new Set(walks().map((w) => w.label.split(' ')[0]));
    for (const spec of catalogue.endpoints) expect(ids.has(spec.id), spec.id).toBe(true);
    expect(catalogue.generations.map((g) => g.publicPrefix)).toEqual(['/api/v1/', '/waves/v1/']);
  });
});

describe.each(ENVOY_FILES)('%s agrees with the endpoint catalogue', (file) => {
  it('on every spec: body to Check, route and idle timeouts, prefix rewrite', () => {
    expect(disagreements(readYaml(file))).toEqual([]);
  });
});

describe('a config that disagrees with the catalogue fails (mutated copies of envoy.yaml)', () => {
  const original = readYaml('envoy/envoy.yaml');
  const mutated = (change: (table: RouteEntry[], config: Record<string, unknown>) => void): unknown => {
    const copy = structuredClone(original) as Record<string, unknown>;
    change(routes(copy), copy);
    return copy;
  };
  const named = (table: RouteEntry[], name: string): RouteEntry => {
    const r = table.find((x) => x.name === name);
    if (!r) throw new Error(`no route ${name}`);
    return r;
  };

  const cases: [string, (table: RouteEntry[], config: Record<string, unknown>) => void, RegExp][] = [
    ['TTS WebSocket sent to the provider (frames unchecked)', (t) => void (named(t, 'tts-live-ws').route!.cluster = 'smallest'), /tts\.unified\.ws .*cluster smallest, expected voicegate_edge/],
    ['a provider route sent to the edge', (t) => void (named(t, 'stt-ws').route!.cluster = 'voicegate_edge'), /stt\.ws .*cluster voicegate_edge, expected smallest/],
    [
      'ext_authz left on an edge route (the JWT would be swapped for the provider key)',
      (t) => void delete named(t, 'tts-ws').typed_per_filter_config!['envoy.filters.http.ext_authz'],
      /tts\.ws .*ext_authz not disabled on an edge route/,
    ],
    [
      'edge route rewritten to the provider path',
      (t) => void (named(t, 'tts-ws').route!.regex_rewrite = { pattern: { regex: '^/smallest/(?:waves|api)/v1/' }, substitution: '/waves/v1/' }),
      /tts\.ws .*rewritten to \/waves\/v1\/lightning-v3\.1\/get_speech\/stream, spec upstream \/smallest\//,
    ],
    ['REST route timeout 15 s', (t) => void (named(t, 'tts-sync').route!.timeout = '15s'), /tts\.sync .*timeout 15000 ms, spec 120000/],
    ['REST route timeout unset (Envoy default 15 s)', (t) => void delete named(t, 'stt-rest').route!.timeout, /stt\.rest .*timeout 15000 ms/],
    ['stream route with a finite timeout', (t) => void (named(t, 'tts-ws').route!.timeout = '120s'), /tts\.ws .*timeout 120000 ms, spec 0/],
    ['stream idle_timeout 60 s', (t) => void (named(t, 'tts-live-sse').route!.idle_timeout = '60s'), /tts\.unified\.sse .*idle_timeout 60000 ms/],
    ['stream idle_timeout removed', (t) => void delete named(t, 'stt-live-ws').route!.idle_timeout, /stt\.unified\.ws .*idle_timeout undefined ms/],
    ['idle_timeout on a REST route', (t) => void (named(t, 'tts-sync').route!.idle_timeout = '300s'), /tts\.sync .*idle_timeout 300000 ms, spec undefined/],
    ['TTS body no longer sent to Check', (t) => void delete named(t, 'tts-sse').typed_per_filter_config, /tts\.sse .*body to Check false, spec readsBody true/],
    [
      'audio upload sent to Check',
      (t) => {
        named(t, 'stt-rest').typed_per_filter_config = structuredClone(named(t, 'tts-sync').typed_per_filter_config);
      },
      /stt\.rest .*body to Check true, spec readsBody false/,
    ],
    [
      'wrong regex rewrite',
      (t) => void (named(t, 'stt-ws').route!.regex_rewrite!.substitution = '/waves/v2/'),
      /stt\.ws .*rewritten to \/waves\/v2\/pulse\/get_text/,
    ],
    ['G1 catch-all not rewritten', (t) => void (named(t, 'smallest-api-v1').route!.prefix_rewrite = '/api/v1/'), /health GET \/smallest\/api\/v1\/health .*rewritten to \/api\/v1\/health/],
    [
      'catch-all moved first (route order)',
      (t) => {
        const i = t.findIndex((r) => r.name === 'smallest');
        t.splice(1, 0, ...t.splice(i, 1));
      },
      /tts\.sse .*\(route smallest\): body to Check false/,
    ],
    ['a spec no route serves', (t) => void t.splice(t.findIndex((r) => r.name === 'smallest'), 1), /health GET \/smallest\/waves\/v1\/health: no proxying route/],
    [
      'connection manager idle bound changed',
      (_t, c) => void (connectionManager(c)['stream_idle_timeout'] = '60s'),
      /stream_idle_timeout 60000 ms/,
    ],
  ];

  it.each(cases)('%s', (_name, change, expected) => {
    const found = disagreements(mutated(change));
    expect(found.some((p) => expected.test(p)), found.join('\n') || '(no disagreement found)').toBe(true);
  });
});
