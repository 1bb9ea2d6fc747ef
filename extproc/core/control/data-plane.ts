/**
 * The data-plane snapshot: what the control plane publishes to every pod (NATS KV, the HTTP
 * fallback, the pod's disk copy) and what a pod compiles, with its local file's identity,
 * providers and CORS sections, into the {@link Snapshot} it decides from.
 *
 * Provider tokens travel sealed under the *snapshot key* (`VOICEGATE_SNAPSHOT_KEY`, same
 * `id:base64` keyring format as `VOICEGATE_KEK`), never under the KEK: a pod can open the tokens
 * it must inject, but a stolen pod secret does not open the control plane's store. A token is
 * bound to its account name and the snapshot revision ({@link snapshotTokenBinding}), so a
 * ciphertext moved onto another account or replayed into another revision does not open.
 */
import { z } from 'zod';
import type { SecretBinding } from './envelope.ts';

export const DATA_PLANE_FORMAT = 1;

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');

/** A token sealed for pods: the envelope of envelope.ts, byte fields in base64. */
export const sealedForPodsSchema = z.strictObject({
  algorithm: z.string().min(1),
  kek_id: z.string().min(1),
  wrapped_key: b64,
  ciphertext: b64,
});
export type SealedForPods = z.infer<typeof sealedForPodsSchema>;

const decimal = z.string().regex(/^\d+(\.\d+)?$/);

export const dataPlaneSnapshotSchema = z.strictObject({
  format: z.literal(DATA_PLANE_FORMAT),
  /** The control plane's configuration revision this was compiled from (gap-free, increasing). */
  revision: z.number().int().min(0),
  published_at: z.iso.datetime(),
  accounts: z.array(
    z.strictObject({
      name: z.string().min(1),
      provider: z.string().min(1),
      base_url: z.string().nullable(),
      concurrency_units: z.number().int().min(1),
      ws_per_unit: z.number().int().min(1),
      /** Null: the account has no token yet (its models then answer 503 account_not_configured or are left out). */
      token: sealedForPodsSchema.nullable(),
    }),
  ),
  collaborators: z.array(
    z.strictObject({
      account: z.string().min(1),
      subject: z.string().regex(/^(user|team|service):.+$/),
      role: z.enum(['manager', 'user']),
    }),
  ),
  models: z.array(
    z.strictObject({
      account: z.string().min(1),
      model_id: z.string().min(1),
      type: z.enum(['tts', 'stt']),
      aliases: z.array(z.string().min(1)),
      /** Seconds; absent (payloads before it existed, or no bound) leaves the model unbounded. */
      max_session_seconds: z.number().int().min(1).optional(),
      price: z.strictObject({
        per_1k_chars: decimal.optional(),
        per_minute: decimal.optional(),
        per_minute_streaming: decimal.optional(),
      }),
    }),
  ),
  team_members: z.array(z.strictObject({ team: z.string().min(1), member: z.string().min(1) })),
  service_keys: z.array(
    z.strictObject({
      /** SHA-256 hex of the key (hashServiceKey); the key itself never leaves the minting answer. */
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      subject: z.string().regex(/^service:.+$/),
      not_after: z.iso.datetime().nullable(),
    }),
  ),
});
export type DataPlaneSnapshot = z.infer<typeof dataPlaneSnapshotSchema>;

/** What a token in revision `revision` of the snapshot is sealed to. */
export function snapshotTokenBinding(account: string, revision: number): SecretBinding {
  return { accountId: `snapshot:${account}`, version: revision };
}
