/**
 * `GET /admin/v1/snapshot`: the pods' HTTP fallback while NATS is unreachable
 * (adapters/http/snapshot-poll.ts is the client). Answers the newest data-plane snapshot text with
 * `ETag: "<revision>"`; `If-None-Match` naming that revision → 304, so a pod polling every 2 s
 * costs one comparison. The text carries provider tokens sealed with the snapshot key only.
 * Administrators and the pod subjects (`--pod-subject`, default `service:voicegate-pods`) may read
 * it; anyone else gets 403 — it lists every account, collaborator and service-key hash.
 */
import type { AdminApp } from './app.ts';
import { forbidden } from './auth.ts';
import { ProblemError, problem } from './problem.ts';

export const SNAPSHOT_ROUTE = '/admin/v1/snapshot';
export const DEFAULT_POD_SUBJECTS: readonly string[] = ['service:voicegate-pods'];

export interface SnapshotRouteDeps {
  readonly latest: () => { readonly revision: number; readonly text: string } | undefined;
  readonly podSubjects?: readonly string[];
}

/** Whether an If-None-Match header (RFC 9110 §13.1.2: a list, weak comparison, or `*`) names `revision`. */
export function ifNoneMatchHits(header: string | undefined, revision: number): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t.replace(/^W\//, '') === `"${revision}"`;
  });
}

/**
 * @example
 * createAdminApp({ ...deps, mount: (app) => mountSnapshotRoute(app, { latest: () => publisher.latest() }) });
 */
export function mountSnapshotRoute(app: AdminApp, deps: SnapshotRouteDeps): void {
  const pods = deps.podSubjects ?? DEFAULT_POD_SUBJECTS;
  app.openAPIRegistry.registerPath({
    method: 'get',
    path: SNAPSHOT_ROUTE,
    tags: ['snapshot'],
    security: [{ bearer: [] }],
    description: 'the data-plane snapshot pods read while NATS is unreachable (administrators and --pod-subject only)',
    responses: {
      200: { description: 'the snapshot JSON; ETag "<revision>"', content: { 'application/json': { schema: { type: 'object' } } } },
      304: { description: 'If-None-Match names the newest revision' },
      401: { description: 'no or bad credential' },
      403: { description: 'neither an administrator nor a pod subject' },
      503: { description: 'no snapshot built yet' },
    },
  });
  app.get(SNAPSHOT_ROUTE, (c) => {
    const who = c.get('principal');
    if (!who.admin && !pods.includes(who.subject)) forbidden('this needs an administrator or a pod subject (--pod-subject)');
    const s = deps.latest();
    if (!s) throw new ProblemError(problem(503, 'no_snapshot', 'the control plane has not built a snapshot yet; try again shortly'), { 'retry-after': '1' });
    const etag = `"${s.revision}"`;
    if (ifNoneMatchHits(c.req.header('if-none-match'), s.revision)) return c.body(null, 304, { etag });
    return c.body(s.text, 200, { etag, 'content-type': 'application/json', 'cache-control': 'no-store' });
  });
}
