/**
 * The endpoint catalogue: one small declarative spec per voice endpoint. The decision and the
 * metering read these; nothing here translates a payload, specs only describe and measure.
 *
 * Public paths are `/{provider}/{provider path}`. Smallest's first path generation (`/api/v1/…`,
 * old host waves-api.smallest.ai) equals the second (`/waves/v1/…` on api.smallest.ai), so the
 * gateway rewrites G1 to G2 — one upstream host, exactly as envoy/envoy.yaml's prefix rewrite does.
 */
import type { ModelType } from '../config/snapshot.ts';
/** How an endpoint's exchange flows: one request and response, an SSE stream, or a WebSocket session. */
export type RouteKind = 'rest' | 'sse' | 'websocket';

/** What a span of an endpoint counts (see core/usage/README.md, Metering). */
export type Meter = 'tts-characters' | 'stt-audio' | 'none';

/** Where an endpoint's model name is found. */
export type ModelSource = 'path' | 'body-or-query' | 'query' | 'none';

export interface EndpointSpec {
  /** Stable id used in metadata, metrics and spans (`tts.sync`, `stt.ws`, …). */
  readonly id: string;
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Matched against the provider path without query; group 1 is the model when `model: 'path'`. */
  readonly pattern: RegExp;
  readonly kind: RouteKind;
  /** Model type the endpoint serves; undefined for model-less endpoints (health). */
  readonly type?: ModelType;
  readonly model: ModelSource;
  /** Whether the decision reads the JSON body (model, text length); Envoy's route then sends it to Check. */
  readonly readsBody: boolean;
  /** How usage is measured: TTS input characters, STT audio seconds, or not at all (health). */
  readonly meter: Meter;
  /**
   * Envoy route `timeout`: from the end of the request body until the upstream response is
   * complete. 0 on streams (SSE, WebSocket), which only an idle bound ends.
   */
  readonly routeTimeoutMs: number;
  /** Envoy route `idle_timeout`; undefined where the connection manager's {@link STREAM_IDLE_TIMEOUT_MS} applies. */
  readonly idleTimeoutMs?: number;
}

/** envoy.yaml's connection manager `stream_idle_timeout`, the idle bound of routes without their own. */
export const STREAM_IDLE_TIMEOUT_MS = 300_000;

/** REST routes: a finite bound (Envoy's 15 s default would cut a long synthesis or transcription). */
const REST_ROUTE = { routeTimeoutMs: 120_000 } as const;
/** SSE and WebSocket routes: `timeout: 0s` (no overall bound), `idle_timeout: 300s`. */
const STREAM_ROUTE = { routeTimeoutMs: 0, idleTimeoutMs: 300_000 } as const;

/** Route facts of provider paths no spec describes: envoy.yaml's catch-all routes. */
export const PASSTHROUGH_ROUTE: Pick<EndpointSpec, 'routeTimeoutMs' | 'idleTimeoutMs'> = REST_ROUTE;

/** One public path generation and where Envoy's prefix rewrite sends it. */
export interface PathGeneration {
  /** Provider-relative public prefix, e.g. `/api/v1/` (public path `/smallest/api/v1/…`). */
  readonly publicPrefix: string;
  /** What replaces it upstream, e.g. `/waves/v1/`. */
  readonly upstreamPrefix: string;
}

export interface ProviderCatalogue {
  /** Maps a provider path to the upstream's canonical path (before query), by {@link generations}. */
  normalize(providerPath: string): string;
  /** Every public path generation; each spec's pattern matches the rewritten path. */
  readonly generations: readonly PathGeneration[];
  readonly endpoints: readonly EndpointSpec[];
}

const smallestEndpoints: readonly EndpointSpec[] = [
  { id: 'tts.sync', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/get_speech$/, kind: 'rest', type: 'tts', model: 'path', readsBody: true, meter: 'tts-characters', ...REST_ROUTE },
  { id: 'tts.sse', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/stream$/, kind: 'sse', type: 'tts', model: 'path', readsBody: true, meter: 'tts-characters', ...STREAM_ROUTE },
  { id: 'tts.ws', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_speech\/stream$/, kind: 'websocket', type: 'tts', model: 'path', readsBody: false, meter: 'tts-characters', ...STREAM_ROUTE },
  { id: 'tts.unified.sync', method: 'POST', pattern: /^\/waves\/v1\/tts\/?$/, kind: 'rest', type: 'tts', model: 'body-or-query', readsBody: true, meter: 'tts-characters', ...REST_ROUTE },
  { id: 'tts.unified.sse', method: 'POST', pattern: /^\/waves\/v1\/tts\/live$/, kind: 'sse', type: 'tts', model: 'body-or-query', readsBody: true, meter: 'tts-characters', ...STREAM_ROUTE },
  { id: 'tts.unified.ws', method: 'GET', pattern: /^\/waves\/v1\/tts\/live$/, kind: 'websocket', type: 'tts', model: 'query', readsBody: false, meter: 'tts-characters', ...STREAM_ROUTE },
  { id: 'stt.rest', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/get_text$/, kind: 'rest', type: 'stt', model: 'path', readsBody: false, meter: 'stt-audio', ...REST_ROUTE },
  { id: 'stt.ws', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_text$/, kind: 'websocket', type: 'stt', model: 'path', readsBody: false, meter: 'stt-audio', ...STREAM_ROUTE },
  { id: 'stt.unified.rest', method: 'POST', pattern: /^\/waves\/v1\/stt\/?$/, kind: 'rest', type: 'stt', model: 'query', readsBody: false, meter: 'stt-audio', ...REST_ROUTE },
  { id: 'stt.unified.ws', method: 'GET', pattern: /^\/waves\/v1\/stt\/live\/?$/, kind: 'websocket', type: 'stt', model: 'query', readsBody: false, meter: 'stt-audio', ...STREAM_ROUTE },
  { id: 'health', method: 'GET', pattern: /^\/waves\/v1\/health$/, kind: 'rest', model: 'none', readsBody: false, meter: 'none', ...REST_ROUTE },
  // The voice catalogue, as npm smallestai calls it. Every one names a TTS model in its path and
  // is entitled like that model, on its account's key: `get_voices` lists the path model's voices;
  // cloned voices belong to the provider account and the SDK manages them under
  // `lightning-large`, so configuring that model (and its collaborators) is what enables — and
  // limits — cloning. Nothing is metered; bodies (audio uploads, `{"voiceId"}`) never reach Check.
  { id: 'voices.list', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_voices$/, kind: 'rest', type: 'tts', model: 'path', readsBody: false, meter: 'none', ...REST_ROUTE },
  { id: 'voices.cloned.list', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_cloned_voices$/, kind: 'rest', type: 'tts', model: 'path', readsBody: false, meter: 'none', ...REST_ROUTE },
  { id: 'voices.cloned.add', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/add_voice$/, kind: 'rest', type: 'tts', model: 'path', readsBody: false, meter: 'none', ...REST_ROUTE },
  { id: 'voices.cloned.delete', method: 'DELETE', pattern: /^\/waves\/v1\/([^/]+)$/, kind: 'rest', type: 'tts', model: 'path', readsBody: false, meter: 'none', ...REST_ROUTE },
];

/** G1 (`/api/v1/`, old host waves-api.smallest.ai) and G2/G3 (`/waves/v1/`) land on one host. */
const smallestGenerations: readonly PathGeneration[] = [
  { publicPrefix: '/api/v1/', upstreamPrefix: '/waves/v1/' },
  { publicPrefix: '/waves/v1/', upstreamPrefix: '/waves/v1/' },
];

function rewriter(generations: readonly PathGeneration[]): (providerPath: string) => string {
  return (p) => {
    const g = generations.find((x) => p.startsWith(x.publicPrefix));
    return g ? g.upstreamPrefix + p.slice(g.publicPrefix.length) : p;
  };
}

const smallest: ProviderCatalogue = {
  normalize: rewriter(smallestGenerations),
  generations: smallestGenerations,
  endpoints: smallestEndpoints,
};

/** Provider catalogues by provider name as used in configs and public paths. */
export const CATALOGUES: ReadonlyMap<string, ProviderCatalogue> = new Map([['smallest', smallest]]);

export interface ParsedPath {
  readonly provider: string;
  /** Canonical upstream path, without query. */
  readonly upstreamPath: string;
  /** Raw query string without `?` ('' when none). */
  readonly query: string;
}

/** Splits `/{provider}/{rest}?{query}`; undefined when the path has no provider segment. */
export function parsePublicPath(pathWithQuery: string): ParsedPath | undefined {
  const q = pathWithQuery.indexOf('?');
  const path = q === -1 ? pathWithQuery : pathWithQuery.slice(0, q);
  const query = q === -1 ? '' : pathWithQuery.slice(q + 1);
  const slash = path.indexOf('/', 1);
  if (path[0] !== '/' || slash <= 1) return undefined;
  const provider = path.slice(1, slash);
  const rest = path.slice(slash);
  const catalogue = CATALOGUES.get(provider);
  return { provider, upstreamPath: catalogue ? catalogue.normalize(rest) : rest, query };
}

/** The first endpoint of the catalogue matching method and canonical path, with the path model. */
export function matchEndpoint(
  catalogue: ProviderCatalogue,
  method: string,
  upstreamPath: string,
): { spec: EndpointSpec; pathModel?: string } | undefined {
  for (const spec of catalogue.endpoints) {
    if (spec.method !== method) continue;
    const m = spec.pattern.exec(upstreamPath);
    if (!m) continue;
    if (spec.model === 'path') {
      const raw = m[1];
      if (raw === undefined) continue;
      let model: string;
      try {
        model = decodeURIComponent(raw);
      } catch {
        continue;
      }
      return { spec, pathModel: model };
    }
    return { spec };
  }
  return undefined;
}

/** The bounds a proxied exchange runs under, resolved as Envoy resolves them for its route. */
export interface RouteTimeouts {
  /** From the end of the request body until the response is complete; 0 = none. */
  readonly routeTimeoutMs: number;
  /** Silence in both directions that ends the exchange; 0 = none. */
  readonly idleTimeoutMs: number;
}

/**
 * The timeouts of the route serving `method pathWithQuery`: its spec's, or the catch-all's for
 * provider paths no spec describes, with the connection manager's idle bound where the route sets
 * none.
 *
 * @example
 * routeTimeouts('POST', '/smallest/waves/v1/lightning-v3.1/get_speech'); // { routeTimeoutMs: 120000, idleTimeoutMs: 300000 }
 */
export function routeTimeouts(method: string, pathWithQuery: string): RouteTimeouts {
  const parsed = parsePublicPath(pathWithQuery);
  const catalogue = parsed ? CATALOGUES.get(parsed.provider) : undefined;
  const spec = parsed && catalogue ? matchEndpoint(catalogue, method.toUpperCase(), parsed.upstreamPath)?.spec : undefined;
  const facts = spec ?? PASSTHROUGH_ROUTE;
  return { routeTimeoutMs: facts.routeTimeoutMs, idleTimeoutMs: facts.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS };
}
