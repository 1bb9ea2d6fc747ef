/**
 * The control plane's side of propagation: the store's {@link ControlConfiguration} (one
 * consistent read) becomes the {@link DataPlaneSnapshot} every pod receives. The inverse of
 * compile-data-plane.ts's mapping, and the only place a provider token changes hands between the
 * two keyrings: opened with the KEK (the store's), sealed again with the snapshot key (the pods'),
 * bound to the account and the revision so a payload's token cannot be moved or replayed.
 */
import type { DataPlaneSnapshot, SealedForPods } from './data-plane.ts';
import { DATA_PLANE_FORMAT, snapshotTokenBinding } from './data-plane.ts';
import type { Keyring, SealedSecret } from './envelope.ts';
import type { ControlConfiguration } from './store.ts';

export interface BuildDataPlaneInput {
  readonly config: ControlConfiguration;
  /** Opens the stored tokens (`VOICEGATE_KEK`). */
  readonly kek: Keyring;
  /** Seals them for pods (`VOICEGATE_SNAPSHOT_KEY`). */
  readonly snapshotKey: Keyring;
  readonly now?: Date;
}

/**
 * @example
 * const payload = buildDataPlaneSnapshot({ config: await store.loadConfiguration(), kek, snapshotKey });
 * // payload.revision === config.revision; payload.accounts[i].token opens only with snapshotKey
 */
export function buildDataPlaneSnapshot(input: BuildDataPlaneInput): DataPlaneSnapshot {
  const { config } = input;
  const revision = config.revision;
  return {
    format: DATA_PLANE_FORMAT,
    revision,
    published_at: (input.now ?? new Date()).toISOString(),
    accounts: config.accounts.map((a) => ({
      name: a.name,
      provider: a.provider,
      base_url: a.baseUrl,
      concurrency_units: a.concurrencyUnits,
      ws_per_unit: a.wsPerUnit,
      token: a.sealedSecret === null ? null : toWire(input.snapshotKey.seal(input.kek.open(a.sealedSecret, a.sealedSecret), snapshotTokenBinding(a.name, revision))),
    })),
    collaborators: config.accounts.flatMap((a) => a.collaborators.map((c) => ({ account: a.name, subject: c.subject, role: c.role }))),
    models: config.models.map((m) => ({
      account: m.account,
      model_id: m.modelId,
      type: m.type,
      aliases: [...m.aliases],
      // Left out when unset, so the payload is byte-identical to one from before the field existed.
      ...(m.maxSessionSeconds !== null ? { max_session_seconds: m.maxSessionSeconds } : {}),
      price: {
        ...(m.price.perThousandChars !== undefined ? { per_1k_chars: m.price.perThousandChars } : {}),
        ...(m.price.perMinute !== undefined ? { per_minute: m.price.perMinute } : {}),
        ...(m.price.perMinuteStreaming !== undefined ? { per_minute_streaming: m.price.perMinuteStreaming } : {}),
      },
    })),
    team_members: config.teams.flatMap((t) => t.members.map((member) => ({ team: t.name, member }))),
    service_keys: config.serviceAccounts.flatMap((s) => s.keys.map((k) => ({ sha256: k.hash, subject: s.subject, not_after: k.notAfter }))),
  };
}

function toWire(s: SealedSecret): SealedForPods {
  return {
    algorithm: s.algorithm,
    kek_id: s.kekId,
    wrapped_key: Buffer.from(s.wrappedKey).toString('base64'),
    ciphertext: Buffer.from(s.ciphertext).toString('base64'),
  };
}
