/**
 * One allow decision → the admission it needs, shared by every transport that admits: the embedded
 * edge (adapters/edge/limits.ts) and Envoy's Check (adapters/envoy/check-admission.ts). The kind and
 * chain come from the decision's metadata; a model several usable accounts serve is admitted on the
 * best of them (core/limits/choice.ts) and the allow is re-bound to that account's key.
 *
 * @example
 * const a = admitDecision(ledger, allow, snapshot);
 * if (a.kind === 'granted') forward(a.decision); // a.lease.release() when the exchange ends
 */
import type { Snapshot } from '../config/snapshot.ts';
import { deny } from '../decision/decide.ts';
import type { Allow, DecisionMetadata, Deny } from '../decision/types.ts';
import { admissionKind, chainOf, type AdmissionKind } from './kinds.ts';
import type { AdmissionLedger, Lease, Refusal } from './ledger.ts';
import { LIMIT_CODES, limitMessage, limitResponse, retryAfterSeconds } from './responses.ts';

export type DecisionAdmission =
  | { readonly kind: 'granted'; readonly lease: Lease; readonly admission: AdmissionKind; readonly decision: Allow }
  | { readonly kind: 'refused'; readonly refusal: Refusal; readonly admission: AdmissionKind };

/** The accounts the decision lets the caller use, best-known first: `accounts`, else `account`. */
export function candidatesOf(md: DecisionMetadata): string[] {
  const listed = md.accounts ? md.accounts.split(',').filter((a) => a !== '') : [];
  if (md.account !== undefined && !listed.includes(md.account)) listed.unshift(md.account);
  return listed;
}

/**
 * `decision` with `account`'s key injected and its name in the metadata; the decision itself when
 * that is the account it names. The key comes from the exchange's snapshot (a remote authorizer's
 * allow is re-bound with this pod's copy of the key); the ledger never grants an unknown account.
 */
export function bindAccount(decision: Allow, snapshot: Snapshot, account: string | undefined): Allow {
  if (account === undefined || account === decision.metadata.account) return decision;
  const config = snapshot.accounts.get(account);
  if (!config) return decision;
  const bearer = { key: 'authorization', value: `Bearer ${config.token}` };
  return {
    ...decision,
    headersToSet: [...decision.headersToSet.filter((h) => h.key.toLowerCase() !== 'authorization'), bearer],
    metadata: { ...decision.metadata, account },
  };
}

/** Takes what `decision`'s exchange costs on its chain, on the best usable account; all or nothing. */
export function admitDecision(ledger: AdmissionLedger, decision: Allow, snapshot: Snapshot): DecisionAdmission {
  const kind = admissionKind(decision.metadata);
  const chain = chainOf(decision.metadata);
  const candidates = candidatesOf(decision.metadata);
  const a = candidates.length > 1 ? ledger.acquireAny(snapshot, chain, candidates, kind) : ledger.acquire(snapshot, chain, kind);
  if (a.kind === 'refused') return { kind: 'refused', refusal: a, admission: kind };
  return { kind: 'granted', lease: a.lease, admission: kind, decision: bindAccount(decision, snapshot, a.lease.account) };
}

/**
 * The refusal as a decision (429, `Retry-After`), for transports that answer with a Deny (Envoy's
 * Check). `body` is the JSON the edge sends ({@link limitResponse}), which names scope and limit;
 * the Deny's own message is the same sentence.
 */
export function limitDenial(r: Refusal, metadata: DecisionMetadata): { readonly deny: Deny; readonly body: string } {
  return {
    deny: deny(LIMIT_CODES[r.scope], limitMessage(r), metadata, { 'retry-after': String(retryAfterSeconds(r)) }),
    body: limitResponse(r).body,
  };
}
