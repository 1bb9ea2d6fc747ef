/**
 * Follows the data-plane snapshot in NATS KV (issue 11 point 7): one key, `kv.watch({ key })`
 * (nats-server 2.9: one subject per watch), the value resolved through the object store when it
 * only points there. Delivers payloads as they arrive; checking, compiling and swapping are the
 * caller's (the composition root), so this file knows NATS and nothing else.
 *
 * `up` reports whether a watch is live, so the caller polls the control plane over HTTP while it
 * is not. Any failure (server gone, bucket not there yet, a watch that ended) closes the
 * connection and starts over after `retryMs`, doubling up to `maxRetryMs` while attempts keep
 * failing (a bucket not created yet costs a pod one connection every 2 s, not two a second).
 */
import { connect, type KV, type KvEntry, type NatsConnection, type QueuedIterator } from 'nats';
import { snapshotKvValue, SNAPSHOT_KV_KEY, type SnapshotDelivery } from '../../core/control/snapshot-entry.ts';

/** Each KV and connect attempt gives up after this, so an outage is noticed within a poll period. */
const NATS_TIMEOUT_MS = 2_000;
/** A half-open connection (no FIN, e.g. a partition) is noticed after two missed pings. */
const PING_MS = 2_000;
export const DEFAULT_SNAPSHOT_WATCH_RETRY_MS = 500;
export const DEFAULT_SNAPSHOT_WATCH_MAX_RETRY_MS = 2_000;

export interface SnapshotWatchOptions {
  readonly servers: string | string[];
  readonly bucket: string;
  readonly objectBucket: string;
  readonly key?: string;
  readonly retryMs?: number;
  readonly maxRetryMs?: number;
  /** Called for every PUT, in order, one at a time (awaited). */
  readonly onDelivery: (d: SnapshotDelivery) => Promise<void> | void;
  /** A watch became live (true) or was lost (false); only transitions. */
  readonly onStatus?: (up: boolean) => void;
  /**
   * A failure worth a log line; the watch retries by itself. A {@link SnapshotValueError} is a
   * value that could not be read (the watch stays live); anything else an outage.
   */
  readonly onError?: (err: Error) => void;
}

export interface SnapshotWatch {
  /** Whether a watch is live right now. */
  readonly up: boolean;
  close(): Promise<void>;
}

export class SnapshotWatchError extends Error {
  override name = 'SnapshotWatchError';
}

/** A value was read but is no payload (bad pointer, missing object): the watch stays live. */
export class SnapshotValueError extends SnapshotWatchError {
  override name = 'SnapshotValueError';
  /** The snapshot revision the value announced; undefined when it did not parse. */
  constructor(message: string, readonly revision?: number) {
    super(message);
  }
}

/**
 * @example
 * const w = watchSnapshotKv({ servers: 'nats://127.0.0.1:4222', bucket: 'voicegate-config',
 *   objectBucket: 'voicegate-config-objects', onDelivery: (d) => accept(d) });
 * await w.close();
 */
export function watchSnapshotKv(opts: SnapshotWatchOptions): SnapshotWatch {
  const key = opts.key ?? SNAPSHOT_KV_KEY;
  const retryMs = opts.retryMs ?? DEFAULT_SNAPSHOT_WATCH_RETRY_MS;
  const maxRetryMs = Math.max(retryMs, opts.maxRetryMs ?? DEFAULT_SNAPSHOT_WATCH_MAX_RETRY_MS);
  let delay = retryMs;
  let closed = false;
  let up = false;
  let nc: NatsConnection | undefined;
  let wake: (() => void) | undefined;
  const setUp = (next: boolean) => {
    if (next === up) return;
    up = next;
    opts.onStatus?.(next);
  };
  const report = (err: unknown) => {
    if (!closed) opts.onError?.(err instanceof Error ? err : new Error(String(err)));
  };

  // One delivery at a time, in arrival order, whichever path (get, watch, catch-up) it came by.
  let chain: Promise<void> = Promise.resolve();
  const deliver = (conn: NatsConnection, e: KvEntry): Promise<void> => {
    if (e.operation !== 'PUT') return chain;
    chain = chain.then(async () => {
      try {
        await opts.onDelivery(await resolveEntry(conn, opts.objectBucket, e));
      } catch (err) {
        report(err);
      }
    });
    return chain;
  };

  const once = async (): Promise<void> => {
    // No client-side reconnect: a lost connection ends this attempt and the next one starts with
    // a fresh connection and a fresh watch. A watch's ordered consumer that outlived a server
    // restart can take its heartbeat timeout (~10 s) to notice; a new one is there at once.
    const conn = await connect({ servers: opts.servers, name: 'voicegate-snapshot', reconnect: false, timeout: NATS_TIMEOUT_MS, pingInterval: PING_MS, maxPingOut: 2 });
    nc = conn;
    if (closed) return void (await conn.close());
    let watch: QueuedIterator<KvEntry> | undefined;
    void conn.closed().then(() => watch?.stop());
    const js = conn.jetstream({ timeout: NATS_TIMEOUT_MS });
    // bindOnly: the publisher creates the bucket; a pod never does (nor guesses its limits).
    const kv: KV = await js.views.kv(opts.bucket, { bindOnly: true, timeout: NATS_TIMEOUT_MS });
    const first = await kv.get(key);
    if (first) await deliver(conn, first);
    watch = await kv.watch({ key });
    if (conn.isClosed()) watch.stop();
    else {
      setUp(true);
      delay = retryMs;
    }
    for await (const e of watch) await deliver(conn, e);
    throw new SnapshotWatchError(`the watch of ${opts.bucket}/${key} ended`);
  };

  void (async () => {
    while (!closed) {
      try {
        await once();
      } catch (err) {
        report(err);
      }
      setUp(false);
      const c = nc;
      nc = undefined;
      await c?.close().catch(() => undefined);
      if (closed) break;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, delay).unref();
        delay = Math.min(delay * 2, maxRetryMs);
      });
    }
  })();

  return {
    get up() {
      return up;
    },
    async close() {
      closed = true;
      wake?.();
      await nc?.close().catch(() => undefined);
      await chain;
    },
  };
}

async function resolveEntry(nc: NatsConnection, objectBucket: string, e: KvEntry): Promise<SnapshotDelivery> {
  let value: unknown;
  try {
    value = JSON.parse(e.string());
  } catch {
    throw new SnapshotValueError(`KV ${e.bucket}/${e.key} revision ${e.revision} is not JSON`);
  }
  const parsed = snapshotKvValue.safeParse(value);
  if (!parsed.success) throw new SnapshotValueError(`KV ${e.bucket}/${e.key} revision ${e.revision} is not a snapshot pointer`);
  const v = parsed.data;
  if ('payload' in v) return { revision: v.revision, sha256: v.sha256, payload: v.payload };
  const os = await nc.jetstream({ timeout: NATS_TIMEOUT_MS }).views.os(objectBucket);
  const blob = await os.getBlob(v.object);
  if (!blob) throw new SnapshotValueError(`object ${objectBucket}/${v.object} of revision ${v.revision} is missing`, v.revision);
  return { revision: v.revision, sha256: v.sha256, payload: new TextDecoder().decode(blob) };
}
