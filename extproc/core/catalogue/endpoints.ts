/**
 * The endpoint catalogue: one small declarative spec per voice endpoint. The decision and the
 * metering read these; nothing here translates a payload, specs only describe and measure.
 *
 * Public paths are `/{provider}/{provider path}`. Smallest's first path generation (`/api/v1/…`,
 * old host waves-api.smallest.ai) equals the second (`/waves/v1/…` on api.smallest.ai), so the
 * gateway rewrites G1 to G2 — one upstream host, exactly as envoy/envoy.yaml's prefix rewrite does.
 */
import type { ModelType } from '../config/snapshot.ts';
import type { RouteKind } from '../decision/types.ts';

/** Where an endpoint's model name is found. */
export type ModelSource = 'path' | 'body-or-query' | 'query' | 'none';

export interface EndpointSpec {
  /** Stable id used in metadata, metrics and spans (`tts.sync`, `stt.ws`, …). */
  readonly id: string;
  readonly method: 'GET' | 'POST';
  /** Matched against the provider path without query; group 1 is the model when `model: 'path'`. */
  readonly pattern: RegExp;
  readonly kind: RouteKind;
  /** Model type the endpoint serves; undefined for model-less endpoints (health). */
  readonly type?: ModelType;
  readonly model: ModelSource;
  /** Whether the decision reads the JSON body (model, text length). */
  readonly readsBody: boolean;
}

export interface ProviderCatalogue {
  /** Maps a provider path to the upstream's canonical path (before query). */
  normalize(providerPath: string): string;
  readonly endpoints: readonly EndpointSpec[];
}

const smallestEndpoints: readonly EndpointSpec[] = [
  { id: 'tts.sync', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/get_speech$/, kind: 'rest', type: 'tts', model: 'path', readsBody: true },
  { id: 'tts.sse', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/stream$/, kind: 'sse', type: 'tts', model: 'path', readsBody: true },
  { id: 'tts.ws', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_speech\/stream$/, kind: 'websocket', type: 'tts', model: 'path', readsBody: false },
  { id: 'tts.unified.sync', method: 'POST', pattern: /^\/waves\/v1\/tts\/?$/, kind: 'rest', type: 'tts', model: 'body-or-query', readsBody: true },
  { id: 'tts.unified.sse', method: 'POST', pattern: /^\/waves\/v1\/tts\/live$/, kind: 'sse', type: 'tts', model: 'body-or-query', readsBody: true },
  { id: 'tts.unified.ws', method: 'GET', pattern: /^\/waves\/v1\/tts\/live$/, kind: 'websocket', type: 'tts', model: 'query', readsBody: false },
  { id: 'stt.rest', method: 'POST', pattern: /^\/waves\/v1\/([^/]+)\/get_text$/, kind: 'rest', type: 'stt', model: 'path', readsBody: false },
  { id: 'stt.ws', method: 'GET', pattern: /^\/waves\/v1\/([^/]+)\/get_text$/, kind: 'websocket', type: 'stt', model: 'path', readsBody: false },
  { id: 'stt.unified.rest', method: 'POST', pattern: /^\/waves\/v1\/stt\/?$/, kind: 'rest', type: 'stt', model: 'query', readsBody: false },
  { id: 'stt.unified.ws', method: 'GET', pattern: /^\/waves\/v1\/stt\/live\/?$/, kind: 'websocket', type: 'stt', model: 'query', readsBody: false },
  { id: 'health', method: 'GET', pattern: /^\/waves\/v1\/health$/, kind: 'rest', model: 'none', readsBody: false },
];

const smallest: ProviderCatalogue = {
  normalize: (p) => (p.startsWith('/api/v1/') ? `/waves/v1/${p.slice(8)}` : p),
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
