/**
 * Path table of api.smallest.ai for all three generations. `/api/v1/X` (old host) and
 * `/waves/v1/X` are the same API, so both prefixes reach every route.
 */

import type { VoiceOp } from './voices.ts';

export type TtsMode = 'sync' | 'sse' | 'ws';
export type SttMode = 'rest' | 'ws';

export type Route =
  | { readonly kind: 'health' }
  /** `model` is the path's model; undefined on unified routes (model comes from the body). */
  | { readonly kind: 'tts'; readonly mode: TtsMode; readonly model: string | undefined }
  /** `model` is the path's model; undefined on unified routes (model comes from `?model=`). */
  | { readonly kind: 'stt'; readonly mode: SttMode; readonly model: string | undefined }
  /** The voice catalogue (`get_voices`) and the key's cloned voices; `model` is the path's. */
  | { readonly kind: 'voices'; readonly op: VoiceOp; readonly model: string }
  | { readonly kind: 'method_not_allowed' }
  | { readonly kind: 'not_found' };

const NOT_FOUND: Route = { kind: 'not_found' };
const NOT_ALLOWED: Route = { kind: 'method_not_allowed' };
const HEALTH: Route = { kind: 'health' };

function apiPath(pathname: string): string | undefined {
  let p = pathname;
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  if (p.startsWith('/waves/v1/')) return p.slice(10);
  if (p.startsWith('/api/v1/')) return p.slice(8);
  return undefined;
}

/** Splits a request target into path and query string (without the `?`). */
export function splitTarget(target: string): { pathname: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { pathname: target, query: '' } : { pathname: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * Classifies a request. `upgrade` is true for WebSocket upgrades (always GET); plain requests
 * never reach a WebSocket route and upgrades never reach a REST one.
 */
export function matchRoute(method: string, pathname: string, upgrade: boolean): Route {
  const p = apiPath(pathname);
  if (p === undefined) return NOT_FOUND;
  const post = method === 'POST';
  switch (p) {
    case 'health':
      return upgrade ? NOT_FOUND : method === 'GET' || method === 'HEAD' ? HEALTH : NOT_ALLOWED;
    case 'tts':
      return upgrade ? NOT_FOUND : post ? { kind: 'tts', mode: 'sync', model: undefined } : NOT_ALLOWED;
    case 'tts/live':
      if (upgrade) return { kind: 'tts', mode: 'ws', model: undefined };
      return post ? { kind: 'tts', mode: 'sse', model: undefined } : NOT_ALLOWED;
    case 'stt':
      return upgrade ? NOT_FOUND : post ? { kind: 'stt', mode: 'rest', model: undefined } : NOT_ALLOWED;
    case 'stt/live':
      return upgrade ? { kind: 'stt', mode: 'ws', model: undefined } : NOT_ALLOWED;
  }
  const slash = p.indexOf('/');
  if (slash === -1 && p !== '') {
    // `DELETE /waves/v1/lightning-large` with `{"voiceId"}` deletes a cloned voice.
    if (upgrade) return NOT_FOUND;
    return method === 'DELETE' ? { kind: 'voices', op: 'delete', model: p } : NOT_FOUND;
  }
  if (slash <= 0) return NOT_FOUND;
  const model = p.slice(0, slash);
  const get = method === 'GET';
  switch (p.slice(slash + 1)) {
    case 'get_voices':
      return upgrade ? NOT_FOUND : get ? { kind: 'voices', op: 'list', model } : NOT_ALLOWED;
    case 'get_cloned_voices':
      return upgrade ? NOT_FOUND : get ? { kind: 'voices', op: 'cloned_list', model } : NOT_ALLOWED;
    case 'add_voice':
      return upgrade ? NOT_FOUND : post ? { kind: 'voices', op: 'clone', model } : NOT_ALLOWED;
    case 'get_speech':
      return upgrade ? NOT_FOUND : post ? { kind: 'tts', mode: 'sync', model } : NOT_ALLOWED;
    case 'stream':
      return upgrade ? NOT_FOUND : post ? { kind: 'tts', mode: 'sse', model } : NOT_ALLOWED;
    case 'get_speech/stream':
      return upgrade ? { kind: 'tts', mode: 'ws', model } : NOT_ALLOWED;
    case 'get_text':
      if (upgrade) return { kind: 'stt', mode: 'ws', model };
      return post ? { kind: 'stt', mode: 'rest', model } : NOT_ALLOWED;
    default:
      return NOT_FOUND;
  }
}
