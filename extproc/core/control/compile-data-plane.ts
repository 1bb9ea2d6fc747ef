/**
 * The pod side of propagation (issue 11 point 7): the control plane's {@link DataPlaneSnapshot}
 * plus the pod's own file (identity, providers, CORS, limits) compiled into the {@link Snapshot}
 * the decision reads — through the one `compileConfig`, so a control-plane pod and a file pod
 * decide alike.
 *
 * Tokens are opened with the snapshot keyring inside compileConfig's `resolveSecret` hook: a
 * token that does not open (tampered, wrong key, replayed into another revision or account)
 * refuses the whole snapshot with an issue naming the account, never an account with an empty key.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { compileConfig, type CompileResult, type SecretResult } from '../config/compile.ts';
import type { ConfigIssue } from '../config/errors.ts';
import { formatPath } from '../config/errors.ts';
import { configDocument, type ConfigDocument } from '../config/schema.ts';
import type { ServiceKeyEntry, Snapshot } from '../config/snapshot.ts';
import { dataPlaneSnapshotSchema, snapshotTokenBinding, type DataPlaneSnapshot, type SealedForPods } from './data-plane.ts';
import type { Keyring, SealedSecret } from './envelope.ts';

/** The sections a pod's file keeps when the control plane supplies accounts and models. */
export const localConfigDocument = configDocument.omit({ accounts: true, models: true });
export type LocalConfigDocument = z.infer<typeof localConfigDocument>;

/** Sections the control plane owns: a file that still has them is refused, not half-applied. */
const CONTROL_SECTIONS = ['accounts', 'models'] as const;

/**
 * Validates a pod's file (already parsed from YAML) for control-plane mode.
 *
 * @example
 * parseLocalConfig({ version: 1, identity, providers })  // { ok: true, doc }
 * parseLocalConfig({ ...file, accounts: [...] })          // { ok: false, issues: [{ path: 'accounts', … }] }
 */
export function parseLocalConfig(value: unknown): { ok: true; doc: LocalConfigDocument } | { ok: false; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  if (typeof value === 'object' && value !== null) {
    for (const key of CONTROL_SECTIONS) {
      if (key in value) {
        issues.push({
          path: key,
          message: `comes from the control plane when --control-url or --control-nats is given; remove "${key}" from this file (it supplies only identity, providers, cors and limits)`,
        });
      }
    }
  }
  if (issues.length > 0) return { ok: false, issues };
  const parsed = localConfigDocument.safeParse(value);
  if (!parsed.success) return { ok: false, issues: parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })) };
  return { ok: true, doc: parsed.data };
}

/** The payload's sha256 as the KV value carries it: lower-case hex of the UTF-8 bytes. */
export function payloadSha256(payload: string | Uint8Array): string {
  return createHash('sha256').update(payload).digest('hex');
}

/** Why a payload was refused before compiling; the message never quotes the payload. */
export class DataPlanePayloadError extends Error {
  override readonly name = 'DataPlanePayloadError';
  constructor(
    readonly reason: 'sha256_mismatch' | 'not_json' | 'invalid' | 'revision_mismatch',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Parses and validates a payload's text; with `expect`, also checks the sha256 and the revision
 * the carrier (KV value, ETag, disk copy) announced, so a truncated or swapped body is refused.
 */
export function decodeDataPlanePayload(text: string, expect: { sha256?: string; revision?: number } = {}): DataPlaneSnapshot {
  if (expect.sha256 !== undefined && payloadSha256(text) !== expect.sha256.toLowerCase()) {
    throw new DataPlanePayloadError('sha256_mismatch', 'the snapshot payload does not match its sha256 (truncated or altered)');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DataPlanePayloadError('not_json', 'the snapshot payload is not JSON');
  }
  const parsed = dataPlaneSnapshotSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues.slice(0, 5).map((i) => `${formatPath(i.path) || '(root)'}: ${i.message}`);
    throw new DataPlanePayloadError('invalid', `the snapshot payload is not a data-plane snapshot: ${first.join('; ')}`);
  }
  if (expect.revision !== undefined && parsed.data.revision !== expect.revision) {
    throw new DataPlanePayloadError('revision_mismatch', `the snapshot payload is revision ${parsed.data.revision}, announced as ${expect.revision}`);
  }
  return parsed.data;
}

/** The secret reference a control-plane token gets inside the composed document (not a YAML spelling). */
const TOKEN_REF = 'snapshot-token:';

export interface DataPlaneDocument {
  readonly doc: ConfigDocument;
  /** Accounts left out because they have no token yet (their models with them). */
  readonly withoutToken: readonly string[];
  /** `providers.<p>.default_models.<type>` of the file that name no model of this snapshot, dropped. */
  readonly droppedDefaults: readonly string[];
}

/**
 * The ConfigDocument the payload and the file make together (pure mapping, no secret opened).
 * Collaborators: `user:x` → users `x`, `team:x` → teams `x`, `service:x` → users `service:x` (a
 * service key is authorized as that user). One models entry per payload model.
 */
export function documentFromDataPlane(payload: DataPlaneSnapshot, local: LocalConfigDocument): DataPlaneDocument {
  const withoutToken = payload.accounts.filter((a) => a.token === null).map((a) => a.name);
  const skipped = new Set(withoutToken);
  const accounts: ConfigDocument['accounts'] = payload.accounts
    .filter((a) => !skipped.has(a.name))
    .map((a) => {
      const users: string[] = [];
      const teams: string[] = [];
      for (const c of payload.collaborators) {
        if (c.account !== a.name) continue;
        const colon = c.subject.indexOf(':');
        const kind = c.subject.slice(0, colon);
        const who = c.subject.slice(colon + 1);
        if (kind === 'team') teams.push(who);
        else if (kind === 'user') users.push(who);
        else users.push(c.subject);
      }
      return {
        name: a.name,
        provider: a.provider,
        token: TOKEN_REF + a.name,
        concurrency: a.concurrency_units,
        ws_per_unit: a.ws_per_unit,
        collaborators: { users: [...new Set(users)], teams: [...new Set(teams)] },
      };
    });
  const models: ConfigDocument['models'] = payload.models
    .filter((m) => !skipped.has(m.account))
    .map((m) => {
      const provider = payload.accounts.find((a) => a.name === m.account)?.provider ?? 'smallest';
      return {
        name: m.model_id,
        provider,
        type: m.type,
        account: m.account,
        aliases: m.aliases,
        ...(m.max_session_seconds !== undefined ? { max_session_seconds: m.max_session_seconds } : {}),
        price: { ...m.price },
      };
    });
  // The file's defaults are static while the models come and go: a default naming a model this
  // revision does not have is dropped (unified routes then need a model), not a refused snapshot.
  const droppedDefaults: string[] = [];
  const providers: ConfigDocument['providers'] = {};
  for (const [name, p] of Object.entries(local.providers)) {
    const defaults: typeof p.default_models = {};
    for (const type of ['tts', 'stt'] as const) {
      const wanted = p.default_models[type];
      if (wanted === undefined) continue;
      const known = models.some((m) => m.provider === name && m.type === type && (m.name === wanted || m.aliases.includes(wanted)));
      if (known) defaults[type] = wanted;
      else droppedDefaults.push(`providers.${name}.default_models.${type}`);
    }
    providers[name] = { ...p, default_models: defaults };
  }
  return { doc: { ...local, providers, accounts, models }, withoutToken, droppedDefaults };
}

export interface DataPlaneCompileInput {
  readonly payload: DataPlaneSnapshot;
  readonly local: LocalConfigDocument;
  /** The snapshot keyring (`VOICEGATE_SNAPSHOT_KEY`): opens the tokens sealed for pods. */
  readonly keyring: Keyring;
  /** Resolves the file's own references (`file:` JWKS, dev signing key). */
  readonly resolveLocalSecret: (ref: string) => Promise<SecretResult>;
  /** For logs, e.g. `nats:kv/voicegate-config`. */
  readonly origin: string;
}

export type DataPlaneCompileResult = CompileResult & { readonly withoutToken: readonly string[]; readonly droppedDefaults: readonly string[] };

/**
 * Compiles a payload and the pod's file into a Snapshot stamped with the payload's revision.
 *
 * @example
 * const r = await compileDataPlane({ payload, local, keyring, resolveLocalSecret, origin: 'nats:kv/voicegate-config' });
 * if (r.ok) source.swap(r.snapshot); else log(r.issues);
 */
export async function compileDataPlane(input: DataPlaneCompileInput): Promise<DataPlaneCompileResult> {
  const { payload } = input;
  const composed = documentFromDataPlane(payload, input.local);
  const byName = new Map(payload.accounts.map((a) => [a.name, a]));
  const resolveSecret = async (ref: string): Promise<SecretResult> => {
    if (!ref.startsWith(TOKEN_REF)) return input.resolveLocalSecret(ref);
    const name = ref.slice(TOKEN_REF.length);
    const sealed = byName.get(name)?.token;
    if (!sealed) return { ok: false, message: `account "${name}" has no token` };
    try {
      const value = input.keyring.open(sealedFromWire(sealed), snapshotTokenBinding(name, payload.revision));
      return { ok: true, value };
    } catch (err) {
      return { ok: false, message: `the token of account "${name}" does not open with the snapshot key (VOICEGATE_SNAPSHOT_KEY): ${(err as Error).message}` };
    }
  };
  const compiled = await compileConfig(composed.doc, { resolveSecret, origin: input.origin, version: payload.revision });
  const notes = { withoutToken: composed.withoutToken, droppedDefaults: composed.droppedDefaults };
  if (!compiled.ok) return { ...compiled, ...notes };
  const snapshot: Snapshot = {
    ...compiled.snapshot,
    serviceKeys: serviceKeysOf(payload),
    teamMembers: teamMembersOf(payload),
  };
  return { ok: true, snapshot, ...notes };
}

function sealedFromWire(s: SealedForPods): SealedSecret {
  return {
    algorithm: s.algorithm,
    kekId: s.kek_id,
    wrappedKey: new Uint8Array(Buffer.from(s.wrapped_key, 'base64')),
    ciphertext: new Uint8Array(Buffer.from(s.ciphertext, 'base64')),
  };
}

/** Every key, expired ones included: the end is checked per request against `notAfterMs`. */
function serviceKeysOf(payload: DataPlaneSnapshot): Map<string, ServiceKeyEntry> {
  const out = new Map<string, ServiceKeyEntry>();
  for (const k of payload.service_keys) {
    out.set(k.sha256, { subject: k.subject as `service:${string}`, notAfterMs: k.not_after === null ? null : Date.parse(k.not_after) });
  }
  return out;
}

function teamMembersOf(payload: DataPlaneSnapshot): Map<string, readonly string[]> {
  const out = new Map<string, string[]>();
  for (const { team, member } of payload.team_members) {
    const teams = out.get(member) ?? [];
    if (!teams.includes(team)) teams.push(team);
    out.set(member, teams);
  }
  return out;
}
