/**
 * Where the data-plane snapshot lives on NATS (the layout the publisher writes and pods read):
 * bucket `voicegate-config` (configurable), key `snapshot`, a small JSON value carrying the
 * revision, the payload's sha256 and either the payload itself or — when the value would exceed
 * the server's max_payload — the name of an object in `<bucket>-objects` holding it.
 */
import { z } from 'zod';

export const DEFAULT_CONFIG_BUCKET = 'voicegate-config';
export const SNAPSHOT_KV_KEY = 'snapshot';

/** The object store bucket beside a config bucket: `voicegate-config` → `voicegate-config-objects`. */
export function snapshotObjectBucket(configBucket: string): string {
  return `${configBucket}-objects`;
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/i, 'must be hex SHA-256');
const revision = z.number().int().min(0);

/** The KV value under `snapshot`. */
export const snapshotKvValue = z.union([
  z.object({ revision, sha256, payload: z.string().min(1) }),
  z.object({ revision, sha256, object: z.string().min(1) }),
]);
export type SnapshotKvValue = z.infer<typeof snapshotKvValue>;

/** A payload as a carrier delivered it: the text still to be checked against `sha256` and compiled. */
export interface SnapshotDelivery {
  readonly revision: number;
  /** Absent over HTTP (TLS and the pod token vouch for the body there). */
  readonly sha256?: string;
  readonly payload: string;
}
