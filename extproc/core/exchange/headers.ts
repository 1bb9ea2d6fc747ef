/**
 * Header rules shared by the REST and WebSocket paths: what a proxy must not forward (RFC 9110
 * §7.6.1 connection-specific fields) and what counts as a caller credential.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { CREDENTIAL_HEADERS as CREDENTIALS } from '../decision/decide.ts';

/** Connection-specific fields (RFC 9110 §7.6.1) plus the legacy ones RFC 2616 §13.5.1 listed. */
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The decision's list of headers through which a caller can present a credential. */
export const CREDENTIAL_HEADERS: ReadonlySet<string> = new Set(CREDENTIALS);

/** The opening-handshake fields `ws` writes itself (RFC 6455 §4.1); forwarding ours would double them. */
const WEBSOCKET_HANDSHAKE = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'sec-websocket-accept',
]);

/** Names listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(connection: string | readonly string[] | undefined): Set<string> {
  const out = new Set<string>();
  const values = typeof connection === 'string' ? [connection] : (connection ?? []);
  for (const v of values) for (const name of v.split(',')) out.add(name.trim().toLowerCase());
  return out;
}

/** True when a field must not cross the proxy in either direction. */
export function hopByHopFilter(connection: string | readonly string[] | undefined): (name: string) => boolean {
  const listed = connectionListed(connection);
  return (name) => {
    const n = name.toLowerCase();
    return HOP_BY_HOP.has(n) || listed.has(n);
  };
}

/** True for the handshake fields the WebSocket client library regenerates. */
export function isWebSocketHandshakeHeader(name: string): boolean {
  return WEBSOCKET_HANDSHAKE.has(name.toLowerCase());
}

/** Joins multi-valued fields the way Envoy presents them to ext_authz (`, `; cookies with `; `). */
export function flattenHeaders(headers: IncomingHttpHeaders | Readonly<Record<string, readonly string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name] = Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : value;
  }
  return out;
}

/**
 * Filters a `rawHeaders` list (`[name, value, name, value, …]`, original casing) for relay to the
 * other side, dropping hop-by-hop fields and any name `drop` rejects.
 */
export function relayRawHeaders(raw: readonly string[], drop: (lowerName: string) => boolean = () => false): string[] {
  const connection: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'connection') connection.push(raw[i + 1] ?? '');
  const hop = hopByHopFilter(connection);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (hop(lower) || drop(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** The forwarding fields the edge sets on every proxied request, as Envoy's connection manager does. */
export interface ForwardedFields {
  'x-forwarded-for'?: string;
  'x-forwarded-proto': string;
}

/**
 * envoy.yaml's connection manager has `use_remote_address: true` and the default
 * `xff_num_trusted_hops: 0`, so before any filter (ext_authz included) Envoy appends the peer's
 * address to `x-forwarded-for` (`,` as the delimiter, repeated fields joined the same way) and
 * overwrites `x-forwarded-proto` with the listener's scheme, whatever the caller sent. Envoy's one
 * twist, appending its own address instead of a loopback peer's, is left out: the edge appends the
 * peer as seen. An IPv4-mapped IPv6 peer (a dual-stack listener) is written as plain IPv4, as the
 * `0.0.0.0` listener of envoy.yaml would see it.
 */
export function forwardedFields(
  existingFor: readonly string[] | undefined,
  peerAddress: string | undefined,
  scheme: 'http' | 'https',
): ForwardedFields {
  const prior = existingFor === undefined ? '' : existingFor.length === 1 ? (existingFor[0] as string) : existingFor.filter((v) => v.length > 0).join(',');
  const peer = peerAddress?.startsWith('::ffff:') && peerAddress.includes('.') ? peerAddress.slice(7) : peerAddress;
  const xff = peer ? (prior ? `${prior},${peer}` : peer) : prior;
  return xff ? { 'x-forwarded-for': xff, 'x-forwarded-proto': scheme } : { 'x-forwarded-proto': scheme };
}
