/**
 * The admin API's guard against a write the pods could never apply: the configuration a change
 * leaves behind is put through the very path every snapshot takes — built as the publisher builds
 * it (tokens opened with the KEK, sealed with the snapshot key), encoded, decoded and compiled as a
 * pod compiles it — inside the change's transaction, so a refusal (422) commits nothing. Without
 * it such a write answered 201 and every pod silently kept the previous revision.
 *
 * What belongs to each pod's own file (its providers, issuers, default models) is not known here:
 * the check compiles against a neutral file that knows every provider the configuration names, so
 * only what the store's content alone gets wrong is refused — e.g. two accounts of one provider
 * whose model names or aliases collide, or one model name typed tts in one account and stt in
 * another.
 */
import { buildDataPlaneSnapshot } from '../../core/control/build-data-plane.ts';
import { compileDataPlane, decodeDataPlanePayload, documentFromDataPlane, localConfigDocument } from '../../core/control/compile-data-plane.ts';
import type { Keyring } from '../../core/control/envelope.ts';
import type { ConfigIssue } from '../../core/config/errors.ts';
import type { ControlConfiguration, ControlStore } from '../../core/control/store.ts';
import { ProblemError, problem } from './problem.ts';

/** Why `config` cannot become a pods' snapshot; empty when it can. Messages never quote a token. */
export type ConfigurationCheck = (config: ControlConfiguration) => Promise<readonly ConfigIssue[]>;

/**
 * @example
 * const check = dataPlaneCheck({ kek, snapshotKey });
 * await check(await store.loadConfiguration()); // [] or [{ path: 'model b/lightning', message: '… already used by …' }]
 */
export function dataPlaneCheck(keys: { readonly kek: Keyring; readonly snapshotKey: Keyring }): ConfigurationCheck {
  return async (config) => {
    for (const a of config.accounts) {
      if (a.sealedSecret === null) continue;
      try {
        keys.kek.open(a.sealedSecret, a.sealedSecret);
      } catch {
        return [{ path: `account ${a.name}`, message: 'its stored token does not open with the key-encryption key (VOICEGATE_KEK)' }];
      }
    }
    let payload;
    try {
      payload = decodeDataPlanePayload(JSON.stringify(buildDataPlaneSnapshot({ config, ...keys })));
    } catch (err) {
      // decodeDataPlanePayload's messages name fields, never values.
      return [{ path: '', message: (err as Error).message }];
    }
    const providers = [...new Set(payload.accounts.map((a) => a.provider))];
    const local = localConfigDocument.parse({
      version: 1,
      identity: { issuers: [{ issuer: 'https://check.invalid', audiences: ['voicegate'], jwks_url: 'https://check.invalid/jwks' }] },
      providers: Object.fromEntries(providers.map((p) => [p, { upstream: 'https://check.invalid' }])),
    });
    const result = await compileDataPlane({
      payload,
      local,
      keyring: keys.snapshotKey,
      resolveLocalSecret: async () => ({ ok: false, message: 'the check has no file of its own' }),
      origin: 'admin-api:check',
    });
    if (result.ok) return [];
    // compileConfig locates issues in the composed document (`models[3].type`): say which resource.
    const doc = documentFromDataPlane(payload, local).doc;
    return result.issues.map((i) => {
      const m = /^(accounts|models)\[(\d+)\]/.exec(i.path);
      if (!m) return i;
      const index = Number(m[2]);
      const path = m[1] === 'models' ? `model ${doc.models[index]?.account}/${doc.models[index]?.name}` : `account ${doc.accounts[index]?.name}`;
      return { path, message: i.message };
    });
  };
}

/**
 * Refuses (422, thrown inside the transaction so it rolls back) when the change made on `tx`
 * since revision `before` leaves a configuration that does not compile. A change that made no
 * revision (an identical entry existed) is not judged: it changed nothing the pods see.
 */
export async function assertCompiles(tx: ControlStore, before: number, check: ConfigurationCheck): Promise<void> {
  const config = await tx.loadConfiguration();
  if (config.revision === before) return;
  const issues = await check(config);
  if (issues.length === 0) return;
  const listed = issues.slice(0, 5).map((i) => (i.path ? `${i.path}: ${i.message}` : i.message));
  const more = issues.length > listed.length ? ` (and ${issues.length - listed.length} more)` : '';
  throw new ProblemError(problem(422, 'configuration_rejected', `nothing was changed: the resulting configuration cannot become the pods' snapshot: ${listed.join('; ')}${more}`));
}
