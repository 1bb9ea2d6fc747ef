/**
 * The pod's disk copy of the last good data-plane payload, encrypted, so that a pod restarting
 * while NATS and the control plane are both away still serves (issue 11 point 7).
 *
 * The payload holds sealed tokens already, but also collaborators, teams and service-key hashes;
 * none of it belongs in plain text on a node's disk. It is sealed with AES-256-GCM under a fresh
 * data key; the data key (base64) is sealed with {@link Keyring.seal} under the snapshot keyring.
 * Two layers because Keyring.seal caps its plaintext at 4 KiB (it is made for tokens), and a
 * payload grows with every account. The revision is bound into both layers' associated data, so a
 * copy whose revision field was edited does not open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Keyring } from './envelope.ts';

export const SNAPSHOT_COPY_FORMAT = 1;
const NONCE = 12;
const TAG = 16;

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const copySchema = z.strictObject({
  format: z.literal(SNAPSHOT_COPY_FORMAT),
  revision: z.number().int().min(0),
  key: z.strictObject({ algorithm: z.string().min(1), kek_id: z.string().min(1), wrapped_key: b64, ciphertext: b64 }),
  /** nonce ‖ AES-256-GCM(data key, payload) ‖ tag, base64. */
  payload: b64,
});

/** The disk copy does not open; the message says why without quoting any of it. */
export class SnapshotCopyError extends Error {
  override readonly name = 'SnapshotCopyError';
  constructor(
    readonly reason: 'malformed' | 'key' | 'tampered',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const keyBinding = (revision: number) => ({ accountId: 'snapshot-copy', version: revision });
const payloadAad = (revision: number) => Buffer.from(`voicegate.snapshot-copy.v1\0${revision}`, 'utf8');

/**
 * The file text of a disk copy of `payload` (the DataPlaneSnapshot JSON text) at `revision`.
 *
 * @example
 * await writeFileAtomic(path, sealSnapshotCopy(ring, payloadText, 42));
 * openSnapshotCopy(ring, await readFile(path, 'utf8'));  // { revision: 42, payload: payloadText }
 */
export function sealSnapshotCopy(ring: Keyring, payload: string, revision: number): string {
  const dataKey = randomBytes(32);
  try {
    const sealedKey = ring.seal(dataKey.toString('base64'), keyBinding(revision));
    const nonce = randomBytes(NONCE);
    const cipher = createCipheriv('aes-256-gcm', dataKey, nonce, { authTagLength: TAG });
    cipher.setAAD(payloadAad(revision));
    const body = Buffer.concat([cipher.update(payload, 'utf8'), cipher.final()]);
    return JSON.stringify({
      format: SNAPSHOT_COPY_FORMAT,
      revision,
      key: {
        algorithm: sealedKey.algorithm,
        kek_id: sealedKey.kekId,
        wrapped_key: Buffer.from(sealedKey.wrappedKey).toString('base64'),
        ciphertext: Buffer.from(sealedKey.ciphertext).toString('base64'),
      },
      payload: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64'),
    });
  } finally {
    dataKey.fill(0);
  }
}

/** Opens a disk copy, or throws {@link SnapshotCopyError}; never returns an empty or partial payload. */
export function openSnapshotCopy(ring: Keyring, text: string): { revision: number; payload: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SnapshotCopyError('malformed', 'the snapshot disk copy is not JSON (truncated or not a voicegate copy)');
  }
  const parsed = copySchema.safeParse(json);
  if (!parsed.success) throw new SnapshotCopyError('malformed', 'the snapshot disk copy is not in the voicegate format');
  const c = parsed.data;
  let dataKey: Buffer;
  try {
    const opened = ring.open(
      {
        algorithm: c.key.algorithm,
        kekId: c.key.kek_id,
        wrappedKey: new Uint8Array(Buffer.from(c.key.wrapped_key, 'base64')),
        ciphertext: new Uint8Array(Buffer.from(c.key.ciphertext, 'base64')),
      },
      keyBinding(c.revision),
    );
    dataKey = Buffer.from(opened, 'base64');
  } catch (cause) {
    throw new SnapshotCopyError('key', `the snapshot disk copy does not open with the snapshot key: ${(cause as Error).message}`, { cause });
  }
  try {
    if (dataKey.length !== 32) throw new Error('data key is not 32 bytes');
    const sealed = Buffer.from(c.payload, 'base64');
    if (sealed.length < NONCE + TAG) throw new Error('sealed payload too short');
    const decipher = createDecipheriv('aes-256-gcm', dataKey, sealed.subarray(0, NONCE), { authTagLength: TAG });
    decipher.setAAD(payloadAad(c.revision));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
    const plain = Buffer.concat([decipher.update(sealed.subarray(NONCE, sealed.length - TAG)), decipher.final()]);
    return { revision: c.revision, payload: plain.toString('utf8') };
  } catch (cause) {
    throw new SnapshotCopyError('tampered', 'the snapshot disk copy was altered (its ciphertext or revision does not authenticate)', { cause });
  } finally {
    dataKey.fill(0);
  }
}
