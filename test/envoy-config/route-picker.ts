/**
 * A small model of Envoy's route selection for the subset of RouteMatch our config uses, so tests
 * can ask "which route serves POST /smallest/…, and what does the provider receive?" against the
 * decoded route table itself.
 *
 * Envoy semantics reproduced (router/config_impl.cc): routes are tried in order and the first
 * match wins; `prefix`, `path` and `safe_regex` see the path without query string or fragment;
 * `safe_regex` must match the WHOLE path (RE2 FullMatch); all `headers` matchers must match, and
 * `:method` is a header; `case_sensitive` defaults to true. Rewrites: `prefix_rewrite` replaces the
 * matched prefix, `regex_rewrite` replaces every match in the path, and the query is kept.
 */

export interface StringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  safe_regex?: { regex: string };
  ignore_case?: boolean;
}

export interface HeaderMatcher {
  name: string;
  string_match?: StringMatch;
  present_match?: boolean;
  invert_match?: boolean;
}

export interface RouteEntry {
  name?: string;
  match: {
    prefix?: string;
    path?: string;
    safe_regex?: { regex: string };
    case_sensitive?: boolean;
    headers?: HeaderMatcher[];
  };
  route?: {
    cluster?: string;
    prefix_rewrite?: string;
    regex_rewrite?: { pattern: { regex: string }; substitution: string };
    timeout?: string;
    idle_timeout?: string;
  };
  direct_response?: { status: number };
  typed_per_filter_config?: Record<string, Record<string, unknown>>;
}

/** A request as the router sees it; header names lower-case. */
export interface RouteRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
}

/** RE2 and JS RegExp agree on the syntax our config uses (groups, classes, alternation, `?`). */
function fullMatch(regex: string, value: string, ignoreCase = false): boolean {
  return new RegExp(`^(?:${regex})$`, ignoreCase ? 'i' : '').test(value);
}

function stripQuery(path: string): string {
  const cut = path.search(/[?#]/);
  return cut === -1 ? path : path.slice(0, cut);
}

function matchString(m: StringMatch, value: string): boolean {
  const fold = (s: string): string => (m.ignore_case ? s.toLowerCase() : s);
  if (m.exact !== undefined) return fold(value) === fold(m.exact);
  if (m.prefix !== undefined) return fold(value).startsWith(fold(m.prefix));
  if (m.suffix !== undefined) return fold(value).endsWith(fold(m.suffix));
  if (m.contains !== undefined) return fold(value).includes(fold(m.contains));
  if (m.safe_regex !== undefined) return fullMatch(m.safe_regex.regex, value);
  throw new Error(`unsupported string matcher ${JSON.stringify(m)}`);
}

function matchHeader(h: HeaderMatcher, req: RouteRequest): boolean {
  const all: Record<string, string> = { ...req.headers, ':method': req.method, ':path': req.path };
  const value = all[h.name.toLowerCase()];
  let ok: boolean;
  if (h.present_match !== undefined) ok = (value !== undefined) === h.present_match;
  else if (h.string_match) ok = value !== undefined && matchString(h.string_match, value);
  else throw new Error(`unsupported header matcher ${JSON.stringify(h)}`);
  return h.invert_match ? !ok : ok;
}

function matchPath(match: RouteEntry['match'], path: string): boolean {
  const ignoreCase = match.case_sensitive === false;
  const p = ignoreCase ? path.toLowerCase() : path;
  if (match.path !== undefined) return p === (ignoreCase ? match.path.toLowerCase() : match.path);
  if (match.prefix !== undefined) return p.startsWith(ignoreCase ? match.prefix.toLowerCase() : match.prefix);
  if (match.safe_regex !== undefined) return fullMatch(match.safe_regex.regex, path, ignoreCase);
  throw new Error(`unsupported route match ${JSON.stringify(match)}`);
}

/** The first route Envoy would pick for the request, or undefined (Envoy answers 404). */
export function pickRoute(routes: readonly RouteEntry[], req: RouteRequest): RouteEntry | undefined {
  const path = stripQuery(req.path);
  return routes.find(
    (r) => matchPath(r.match, path) && (r.match.headers ?? []).every((h) => matchHeader(h, req)),
  );
}

/** The path (with query) Envoy sends upstream after the route's rewrite. */
export function rewrittenPath(route: RouteEntry, requestPath: string): string {
  const path = stripQuery(requestPath);
  const query = requestPath.slice(path.length);
  const action = route.route;
  if (!action) return requestPath;
  if (action.prefix_rewrite !== undefined) {
    const prefix = route.match.prefix ?? route.match.path;
    if (prefix === undefined) throw new Error('prefix_rewrite on a regex route replaces the whole path');
    return action.prefix_rewrite + path.slice(prefix.length) + query;
  }
  if (action.regex_rewrite) {
    // RE2 GlobalReplace; `\1` in the substitution becomes JS `$1`.
    const re = new RegExp(action.regex_rewrite.pattern.regex, 'g');
    return path.replace(re, action.regex_rewrite.substitution.replace(/\\(\d)/g, '$$$1')) + query;
  }
  return requestPath;
}
