/**
 * Query-string surgery that leaves every parameter it keeps byte-for-byte as the caller wrote it
 * (`URLSearchParams` would re-encode `%20` as `+` and reorder nothing, but still rewrites bytes).
 */

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * Removes every occurrence of the named parameters from `pathWithQuery` (Envoy's
 * `query_parameters_to_remove`), keeping the path and the other parameters untouched.
 *
 * @example removeQueryParams('/a?token=x&model=pulse', ['token']) === '/a?model=pulse'
 */
export function removeQueryParams(pathWithQuery: string, names: Iterable<string>): string {
  const q = pathWithQuery.indexOf('?');
  if (q === -1) return pathWithQuery;
  const drop = new Set(names);
  if (drop.size === 0) return pathWithQuery;
  const pairs = pathWithQuery.slice(q + 1).split('&');
  const kept = pairs.filter((pair) => {
    const eq = pair.indexOf('=');
    return !drop.has(decodeName(eq === -1 ? pair : pair.slice(0, eq)));
  });
  if (kept.length === pairs.length) return pathWithQuery;
  const path = pathWithQuery.slice(0, q);
  const rest = kept.filter((pair) => pair !== '');
  return rest.length === 0 ? path : `${path}?${rest.join('&')}`;
}

/**
 * The first parameter the decision reads that a provider could read differently: one of `names`
 * given more than once (compared by decoded name; providers take the last, the decision the
 * first), or a name that decodes to `literal` without being it (Envoy removes only the raw name).
 */
export function ambiguousParam(query: string, names: readonly string[], literal: string): string | undefined {
  if (query === '') return undefined;
  const seen = new Set<string>();
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const raw = eq === -1 ? pair : pair.slice(0, eq);
    const name = decodeName(raw);
    if (!names.includes(name)) continue;
    if (name === literal && raw !== literal) return name;
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}
