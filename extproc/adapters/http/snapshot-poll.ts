/**
 * The HTTP fallback of propagation: `GET <control-url>/admin/v1/snapshot` with the pod token and
 * `If-None-Match: "<revision>"`, used while NATS is unreachable. 304 costs the control plane
 * one revision comparison; 200 carries the payload JSON and `ETag: "<revision>"`.
 */
import type { SnapshotDelivery } from '../../core/control/snapshot-entry.ts';

export const SNAPSHOT_PATH = '/admin/v1/snapshot';
const DEFAULT_TIMEOUT_MS = 2_000;

export type SnapshotPoll = { readonly kind: 'not_modified' } | ({ readonly kind: 'snapshot' } & SnapshotDelivery);

/** The control plane did not answer with a snapshot; the message never carries the pod token. */
export class SnapshotPollError extends Error {
  override readonly name = 'SnapshotPollError';
  constructor(message: string, readonly status?: number, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface SnapshotPollOptions {
  /** Base URL of the control plane, e.g. `http://control:8081`. */
  readonly controlUrl: string;
  readonly podToken: string;
  /** The revision in force; absent: the pod has none (always 200). */
  readonly revision?: number;
  readonly timeoutMs?: number;
}

/**
 * @example
 * const r = await pollSnapshot({ controlUrl, podToken, revision: 41 });
 * if (r.kind === 'snapshot') accept(r);
 */
export async function pollSnapshot(opts: SnapshotPollOptions): Promise<SnapshotPoll> {
  const url = new URL(SNAPSHOT_PATH, opts.controlUrl.replace(/\/*$/, '/')).toString();
  const headers: Record<string, string> = { authorization: `Bearer ${opts.podToken}`, accept: 'application/json' };
  if (opts.revision !== undefined) headers['if-none-match'] = `"${opts.revision}"`;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) });
  } catch (cause) {
    throw new SnapshotPollError(`control plane at ${new URL(url).origin} is unreachable (${(cause as Error).message})`, undefined, { cause });
  }
  if (res.status === 304) {
    await res.body?.cancel();
    return { kind: 'not_modified' };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new SnapshotPollError(`control plane answered ${res.status} to ${SNAPSHOT_PATH}${res.status === 401 || res.status === 403 ? ' (check --pod-token-file)' : ''}`, res.status);
  }
  const payload = await res.text();
  const etag = /^(?:W\/)?"(\d+)"$/.exec(res.headers.get('etag') ?? '');
  if (!etag) throw new SnapshotPollError(`control plane answered ${SNAPSHOT_PATH} without an ETag "<revision>"`, 200);
  return { kind: 'snapshot', revision: Number(etag[1]), payload };
}
