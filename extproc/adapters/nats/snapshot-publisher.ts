/**
 * Puts the data-plane snapshot where pods watch it (issue 11 point 7; layout in
 * core/control/snapshot-entry.ts): one KV key carrying `{revision, sha256, payload}`, or — when
 * that value would not fit the server's max_payload — `{revision, sha256, object}` pointing to
 * `snapshot-<revision>` in the object store beside the bucket. Older snapshot objects are deleted
 * once the pointer has moved past them.
 *
 * The key only moves forward: each publish reads the entry, does nothing when it already carries
 * a revision ≥ ours, and otherwise writes with compare-and-set on the entry's KV revision
 * (`kv.update(key, v, seq)`, `kv.create` when absent), re-reading on a conflict. Two control
 * planes publishing at once (a rolling deploy, two replicas) can therefore never move pods back.
 *
 * The connection is made on the first publish and then reconnects forever (nats.js, bounded
 * wait); a publish while NATS is away fails after `timeoutMs` and the caller retries it.
 */
import { connect, type KV, type NatsConnection, type ObjectStore } from 'nats';
import { payloadSha256 } from '../../core/control/compile-data-plane.ts';
import { snapshotKvValue, snapshotObjectBucket, SNAPSHOT_KV_KEY, type SnapshotKvValue } from '../../core/control/snapshot-entry.ts';

/** Room for the KV message's headers and subject inside max_payload (nats.js adds ~100 bytes). */
export const INLINE_MARGIN_BYTES = 4 * 1024;
const DEFAULT_TIMEOUT_MS = 2_000;
/** nats.js waits this long between reconnect attempts (plus jitter); attempts never stop. */
const RECONNECT_WAIT_MS = 500;
/** JetStream's "wrong last sequence" (KV compare-and-set lost). */
const WRONG_LAST_SEQUENCE = 10071;
const CAS_ATTEMPTS = 10;
const OBJECT_PREFIX = 'snapshot-';

export interface SnapshotPublisherOptions {
  readonly servers: string | string[];
  readonly bucket: string;
  /** Default `<bucket>-objects`. */
  readonly objectBucket?: string;
  readonly key?: string;
  readonly timeoutMs?: number;
}

/** What one publish did: the key now carries `inForce` (ours unless another publisher was ahead). */
export type PublishOutcome =
  | { readonly kind: 'inline' | 'object'; readonly revision: number; readonly bytes: number }
  | { readonly kind: 'skipped'; readonly revision: number; readonly inForce: number };

export interface SnapshotPublisher {
  publish(revision: number, text: string): Promise<PublishOutcome>;
  close(): Promise<void>;
}

export class SnapshotPublishError extends Error {
  override name = 'SnapshotPublishError';
}

interface Handles {
  readonly nc: NatsConnection;
  readonly kv: KV;
  readonly os: ObjectStore;
}

/**
 * @example
 * const p = natsSnapshotPublisher({ servers: 'nats://127.0.0.1:4222', bucket: 'voicegate-config' });
 * await p.publish(42, JSON.stringify(buildDataPlaneSnapshot({ config, kek, snapshotKey })));
 */
export function natsSnapshotPublisher(opts: SnapshotPublisherOptions): SnapshotPublisher {
  const key = opts.key ?? SNAPSHOT_KV_KEY;
  const objectBucket = opts.objectBucket ?? snapshotObjectBucket(opts.bucket);
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let handles: Promise<Handles> | undefined;
  let closed = false;
  /** Whether snapshot objects may exist (unknown at first): an inline publish then skips listing. */
  let objects = true;

  const open = async (): Promise<Handles> => {
    const nc = await connect({ servers: opts.servers, name: 'voicegate-snapshot-publisher', timeout, maxReconnectAttempts: -1, reconnectTimeWait: RECONNECT_WAIT_MS });
    try {
      const js = nc.jetstream({ timeout });
      // The publisher owns the buckets: pods only bind (snapshot-watch.ts). One replica, one
      // value kept — pods want the newest snapshot only, and nats-server 2.9 has no per-key TTL.
      const kv = await js.views.kv(opts.bucket, { history: 1, replicas: 1, timeout });
      const os = await js.views.os(objectBucket, { replicas: 1 });
      return { nc, kv, os };
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  };

  /** One connection for the publisher's life; a failed first connect is retried on the next publish. */
  const ready = (): Promise<Handles> => {
    if (closed) return Promise.reject(new SnapshotPublishError('the snapshot publisher is closed'));
    handles ??= open().catch((err: unknown) => {
      handles = undefined;
      throw err;
    });
    return handles;
  };

  const inForce = async (kv: KV): Promise<{ seq: number; revision: number } | undefined> => {
    const e = await kv.get(key);
    if (!e || e.operation !== 'PUT') return e ? { seq: e.revision, revision: -1 } : undefined;
    let parsed: SnapshotKvValue | undefined;
    try {
      parsed = snapshotKvValue.parse(JSON.parse(e.string()));
    } catch {
      parsed = undefined;
    }
    // Another publisher's object: ours to prune once the key moves past it.
    if (parsed && 'object' in parsed) objects = true;
    // An unreadable value is overwritten: pods refuse it anyway.
    return { seq: e.revision, revision: parsed?.revision ?? -1 };
  };

  /** Deletes `snapshot-<n>` objects older than the revision the key now carries. */
  const prune = async (os: ObjectStore, keep: number): Promise<void> => {
    if (!objects) return;
    let left = 0;
    for (const info of await os.list()) {
      const n = info.name.startsWith(OBJECT_PREFIX) ? Number(info.name.slice(OBJECT_PREFIX.length)) : NaN;
      if (!Number.isInteger(n)) continue;
      if (n < keep) await os.delete(info.name);
      else left++;
    }
    objects = left > 0;
  };

  return {
    async publish(revision, text) {
      const { nc, kv, os } = await ready();
      const sha256 = payloadSha256(text);
      const inline = JSON.stringify({ revision, sha256, payload: text } satisfies SnapshotKvValue);
      const limit = (nc.info?.max_payload ?? 1024 * 1024) - INLINE_MARGIN_BYTES;
      const bytes = Buffer.byteLength(text);
      let uploaded: string | undefined;
      for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        const current = await inForce(kv);
        if (current && current.revision >= revision) {
          await prune(os, current.revision);
          return { kind: 'skipped', revision, inForce: current.revision };
        }
        let value = inline;
        if (Buffer.byteLength(inline) > limit) {
          const name = `${OBJECT_PREFIX}${revision}`;
          objects = true;
          // Chunks below max_payload with room for JetStream's headers (nats.js only clamps to it).
          if (uploaded === undefined) await os.putBlob({ name, options: { max_chunk_size: Math.max(1024, Math.min(128 * 1024, limit)) } }, new TextEncoder().encode(text));
          uploaded = name;
          value = JSON.stringify({ revision, sha256, object: name } satisfies SnapshotKvValue);
        }
        try {
          if (current) await kv.update(key, value, current.seq);
          else await kv.create(key, value);
        } catch (err) {
          if ((err as { api_error?: { err_code?: number } }).api_error?.err_code === WRONG_LAST_SEQUENCE) continue;
          throw err;
        }
        await prune(os, revision);
        return { kind: uploaded ? 'object' : 'inline', revision, bytes };
      }
      throw new SnapshotPublishError(`the ${opts.bucket}/${key} entry kept changing under revision ${revision} (${CAS_ATTEMPTS} compare-and-set attempts)`);
    },
    async close() {
      closed = true;
      const h = await handles?.catch(() => undefined);
      handles = undefined;
      await h?.nc.close().catch(() => undefined);
    },
  };
}
