/**
 * Issue 10, point 7, under Envoy: STT WebSockets go from Envoy straight to the provider, so the
 * edge never sees them and ext_authz decides only their upgrade. The one bound on such a session's
 * life is the route's `max_stream_duration`, which activity does not reset; it must be there, on
 * every STT WebSocket route, and agree with the edge's own `--max-session` default. TTS WebSockets
 * go to the edge, which bounds and re-checks them itself.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_SESSION_MS } from '../../extproc/adapters/edge/ws-proxy.ts';
import { ENVOY_FILES, readYaml, routes } from './envoy-files.ts';
import { pickRoute, type RouteRequest } from './route-picker.ts';

const WS = { upgrade: 'websocket', connection: 'Upgrade' };
const upgrade = (path: string): RouteRequest => ({ method: 'GET', path, headers: WS });

const STT_SOCKETS = [
  '/smallest/waves/v1/pulse/get_text?language=en',
  '/smallest/api/v1/pulse/get_text',
  '/smallest/waves/v1/stt/live?model=pulse',
  '/smallest/api/v1/stt/live',
];
const TTS_SOCKETS = ['/smallest/waves/v1/lightning-v3.1/get_speech/stream', '/smallest/waves/v1/tts/live?model=lightning-v3.1'];

function maxStreamDuration(route: unknown): unknown {
  return (route as { route?: { max_stream_duration?: { max_stream_duration?: unknown } } }).route?.max_stream_duration?.max_stream_duration;
}

describe.each(ENVOY_FILES)('%s bounds the life of WebSocket sessions', (file) => {
  const table = routes(readYaml(file));

  it.each(STT_SOCKETS)('STT %s: provider route with max_stream_duration = the edge --max-session default', (path) => {
    const route = pickRoute(table, upgrade(path));
    expect(route?.route?.cluster).toBe('smallest');
    expect(maxStreamDuration(route)).toBe(`${DEFAULT_MAX_SESSION_MS / 1000}s`);
  });

  it.each(TTS_SOCKETS)('TTS %s: goes to the edge, which bounds and re-checks the session', (path) => {
    expect(pickRoute(table, upgrade(path))?.route?.cluster).toBe('voicegate_edge');
  });
});
