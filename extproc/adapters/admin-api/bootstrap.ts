/**
 * The first administrator. On a store where no service account has ever existed (none now, and no
 * `service_account` audit event), creates service account `bootstrap-admin` — an administrator
 * because `service:bootstrap-admin` is in the default admin-subject list — and mints its key. The
 * caller prints the key once; every later start finds the account's history and mints nothing.
 * Two control planes starting together on one database: the second one's create is the identical
 * no-op (`created: false`), so only one key is ever minted.
 */
import type { ControlStore } from '../../core/control/store.ts';

export const BOOTSTRAP_ACCOUNT = 'bootstrap-admin';
export const BOOTSTRAP_SUBJECT = `service:${BOOTSTRAP_ACCOUNT}` as const;

export interface Bootstrapped {
  readonly subject: typeof BOOTSTRAP_SUBJECT;
  /** The key, to be shown once; never logged. */
  readonly key: string;
}

export async function bootstrapAdmin(store: ControlStore): Promise<Bootstrapped | undefined> {
  if ((await store.listServiceAccounts({ limit: 1 })).items.length > 0) return undefined;
  if ((await store.listAuditEvents({ resource: 'service_account' }, { limit: 1 })).items.length > 0) return undefined;
  const ctx = { actor: 'system:bootstrap' };
  const sa = await store.createServiceAccount({ name: BOOTSTRAP_ACCOUNT, description: 'first administrator, created on the first start; rotate or delete its key once you have your own' }, ctx);
  if (!sa.created) return undefined;
  const issued = await store.createServiceKey(BOOTSTRAP_ACCOUNT, {}, ctx);
  return { subject: BOOTSTRAP_SUBJECT, key: issued.plaintext };
}
