/**
 * An HTTP client of the admin API (`/admin/v1/…`), for `voicegate admin` and `voicegate apply`.
 * Every answer is validated against the API's own view schemas (wire.ts), so a control plane of
 * another version fails loudly instead of printing half a table. Refusals become
 * {@link AdminApiError} carrying the problem+json; a control plane that cannot be reached becomes
 * {@link ControlUnreachableError}. The bearer goes in the Authorization header and nowhere else:
 * no error or message of this module quotes it.
 *
 * @example
 * const client = new AdminClient({ baseUrl: 'http://127.0.0.1:8081', bearer: key });
 * const accounts = await client.listAll('/admin/v1/accounts', W.AccountView);
 * const { etag } = await client.get(`/admin/v1/accounts/acme`, W.AccountView);
 * await client.send('PATCH', '/admin/v1/accounts/acme', W.AccountView, { body: { concurrency_units: 4 }, ifMatch: etag });
 */
import { z } from 'zod';
import type { Problem } from './problem.ts';
import * as W from './wire.ts';

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** The API's largest page: fewer round trips when a list is followed to its end. */
export const MAX_PAGE_SIZE = 500;

const ProblemBody = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  field: z.string().optional(),
});

/** The API refused: its problem+json (or one made from the status when the body is not one). */
export class AdminApiError extends Error {
  override readonly name = 'AdminApiError';
  constructor(readonly problem: Problem) {
    super(`${problem.title}: ${problem.detail}${problem.field !== undefined ? ` (field ${problem.field})` : ''}`);
  }
  get status(): number {
    return this.problem.status;
  }
}

/** No HTTP answer at all: refused, unresolvable, timed out, TLS failure. */
export class ControlUnreachableError extends Error {
  override readonly name = 'ControlUnreachableError';
  constructor(readonly url: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot reach the control plane at ${url}: ${reason}`, options);
  }
}

/** An answer that is not what this version of the API sends. */
export class UnexpectedAnswerError extends Error {
  override readonly name = 'UnexpectedAnswerError';
}

export interface AdminClientOptions {
  /** `http://127.0.0.1:8081` (a trailing slash or `/admin/v1` is tolerated). */
  readonly baseUrl: string;
  /** A JWT or a `vg_` service key. */
  readonly bearer: string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Page size of {@link AdminClient.listAll}; tests use 1 to walk cursors. */
  readonly pageSize?: number;
  readonly fetch?: typeof fetch;
}

export interface Answer<T> {
  readonly status: number;
  readonly value: T;
  /** `"<version>"` as the API sent it, for the next If-Match. */
  readonly etag: string | undefined;
}

export interface SendOptions {
  readonly body?: unknown;
  /** Sent as is, with this content type (apply documents). */
  readonly raw?: { readonly text: string; readonly contentType: string };
  readonly query?: Readonly<Record<string, string | undefined>>;
  readonly ifMatch?: string | undefined;
}

type Query = Readonly<Record<string, string | undefined>>;

/** `http://user:pass@host/` → `http://host`: the URL as error messages may show it. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}

export class AdminClient {
  readonly baseUrl: string;
  readonly #bearer: string;
  readonly #o: AdminClientOptions;

  constructor(o: AdminClientOptions) {
    this.baseUrl = o.baseUrl.replace(/\/+$/, '').replace(/\/admin\/v1$/, '');
    this.#bearer = o.bearer;
    this.#o = o;
  }

  get<T>(path: string, schema: z.ZodType<T>, query?: Query): Promise<Answer<T>> {
    return this.send('GET', path, schema, query ? { query } : {});
  }

  /** Every item of a paged list, following `next_cursor` to the end. */
  async listAll<T>(path: string, item: z.ZodType<T>, query: Query = {}): Promise<T[]> {
    const page = z.object({ items: z.array(item), next_cursor: z.string().nullable() });
    const out: T[] = [];
    let cursor: string | undefined;
    do {
      const limit = String(this.#o.pageSize ?? MAX_PAGE_SIZE);
      const { value } = await this.get(path, page, { ...query, limit, cursor });
      out.push(...value.items);
      cursor = value.next_cursor ?? undefined;
    } while (cursor !== undefined);
    return out;
  }

  /** One call; a 2xx answer validated by `schema` (a 204 yields undefined), anything else thrown. */
  async send<T>(method: string, path: string, schema: z.ZodType<T>, o: SendOptions = {}): Promise<Answer<T>> {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [k, v] of Object.entries(o.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { authorization: `Bearer ${this.#bearer}`, accept: 'application/json, application/problem+json' };
    let body: string | undefined;
    if (o.raw) {
      body = o.raw.text;
      headers['content-type'] = o.raw.contentType;
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = 'application/json';
    }
    if (o.ifMatch !== undefined) headers['if-match'] = o.ifMatch;
    const timeout = AbortSignal.timeout(this.#o.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    const signal = this.#o.signal ? AbortSignal.any([this.#o.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await (this.#o.fetch ?? fetch)(url, { method, headers, signal, ...(body !== undefined ? { body } : {}) });
    } catch (err) {
      throw new ControlUnreachableError(displayUrl(this.baseUrl), reasonOf(err, timeout), { cause: err });
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) throw new AdminApiError(problemOf(res, text));
    const etag = res.headers.get('etag') ?? undefined;
    if (res.status === 204) return { status: 204, value: undefined as T, etag };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new UnexpectedAnswerError(`${method} ${path} answered ${res.status} without JSON; is ${displayUrl(this.baseUrl)} a voicegate control plane?`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UnexpectedAnswerError(`${method} ${path} answered a shape this CLI does not know (${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}); are the CLI and the control plane the same version?`);
    }
    return { status: res.status, value: parsed.data, etag };
  }
}

function problemOf(res: Response, text: string): Problem {
  const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  if (type === 'application/problem+json') {
    try {
      const p = ProblemBody.safeParse(JSON.parse(text));
      if (p.success) return { ...p.data, ...(p.data.field === undefined ? {} : { field: p.data.field }) } as Problem;
    } catch {
      // fall through: a problem type with a broken body is reported by its status
    }
  }
  // A proxy's HTML page or an empty body: its text is not shown (it could echo the request).
  return { type: 'about:blank', title: res.statusText || `HTTP ${res.status}`, status: res.status, detail: `the server answered ${res.status} without a problem document` };
}

function reasonOf(err: unknown, timeout: AbortSignal): string {
  if (timeout.aborted) return 'no answer in time';
  if (err instanceof Error && err.name === 'AbortError') return 'aborted';
  // undici: TypeError('fetch failed') with the socket error as cause.
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  // `bad port`: fetch refuses the ports browsers block (1, 6000, …) before connecting.
  if (cause && typeof cause.message === 'string' && cause.message !== '') return cause.message;
  return err instanceof Error ? err.message : 'error';
}

// ── typed views, re-exported so the CLI names one module ────────────────────────────────────
export const Views = {
  account: W.AccountView,
  collaborator: W.CollaboratorView,
  model: W.ModelView,
  team: W.TeamView,
  member: W.MemberView,
  serviceAccount: W.ServiceAccountView,
  serviceKey: W.ServiceKeyView,
  issuedKey: W.IssuedKeyView,
  audit: W.AuditView,
  usage: z.object({ by: z.string(), from: z.string(), to: z.string(), rows: z.array(W.UsageRowView) }),
  apply: W.ApplyResultView,
  /** 204 answers. */
  none: z.undefined(),
} as const;

export type AccountView = z.infer<typeof W.AccountView>;
export type CollaboratorView = z.infer<typeof W.CollaboratorView>;
export type ModelView = z.infer<typeof W.ModelView>;
export type TeamView = z.infer<typeof W.TeamView>;
export type MemberView = z.infer<typeof W.MemberView>;
export type ServiceAccountView = z.infer<typeof W.ServiceAccountView>;
export type ServiceKeyView = z.infer<typeof W.ServiceKeyView>;
export type IssuedKeyView = z.infer<typeof W.IssuedKeyView>;
export type AuditView = z.infer<typeof W.AuditView>;
export type UsageView = z.infer<typeof Views.usage>;
export type ApplyResult = z.infer<typeof W.ApplyResultView>;
