/**
 * Finds the caller's gateway token: `Authorization: Bearer …`, or — for browser WebSockets that
 * cannot set headers — the `token` query parameter.
 */
/** The query parameter browsers use to pass a token on WebSocket URLs (they cannot set headers). */
export const TOKEN_QUERY_PARAMETER = 'token';

export type TokenLookup = { found: true; token: string } | { found: false; malformed: boolean };

export function findToken(headers: Readonly<Record<string, string>>, pathWithQuery: string): TokenLookup {
  const auth = headers['authorization'];
  if (auth !== undefined && auth !== '') {
    const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(auth);
    return m?.[1] ? { found: true, token: m[1] } : { found: false, malformed: true };
  }
  const q = pathWithQuery.indexOf('?');
  if (q !== -1) {
    // Only the literal raw name: Envoy's query_parameters_to_remove strips nothing else.
    const prefix = `${TOKEN_QUERY_PARAMETER}=`;
    const pair = pathWithQuery.slice(q + 1).split('&').find((p) => p.startsWith(prefix));
    const raw = pair?.slice(prefix.length) ?? '';
    let token = raw;
    try {
      token = decodeURIComponent(raw.replace(/\+/g, ' '));
    } catch {
      token = raw;
    }
    if (token) return { found: true, token };
  }
  return { found: false, malformed: false };
}
