/**
 * Who is calling, and may they. A bearer credential is a `vg_` service key (looked up in the store
 * by its SHA-256) or a JWT verified by the identity layer against the configured issuers.
 *
 * Administrators: a JWT whose roles claim holds the admin role (as the identity layer qualifies
 * it: `voicegate-admin`, or `corp:voicegate-admin` from an issuer named `corp`), or a caller whose
 * subject is in the admin-subject list (`service:bootstrap-admin` by default). Managers of an
 * account (collaborator role `manager` for their user, one of their teams — from the token or the
 * store — or their service subject) may read it and change its collaborators and models.
 */
import type { IdentityResult } from '../../core/identity/identity.ts';
import { hashServiceKey, isServiceKeyShaped } from '../../core/control/service-key.ts';
import type { ControlStore } from '../../core/control/store.ts';
import { allPages as all } from '../../core/control/cursor.ts';
import { problem, ProblemError } from './problem.ts';

export interface TokenVerifier {
  verify(token: string): Promise<IdentityResult>;
}

export interface Principal {
  /** The actor of every change it makes: `user:alice`, `service:ci`. */
  readonly subject: `user:${string}` | `service:${string}`;
  /** The name team memberships list: `alice`, `corp:alice`, `service:ci`. */
  readonly member: string;
  /** Teams the token claims (a service key claims none). */
  readonly tokenTeams: readonly string[];
  readonly admin: boolean;
}

export interface AuthOptions {
  readonly store: ControlStore;
  readonly verifier: TokenVerifier;
  readonly adminRole: string;
  readonly adminSubjects: readonly string[];
}

const BEARER = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i;

function unauthorized(code: string, detail: string): ProblemError {
  return new ProblemError(problem(401, code, detail), { 'www-authenticate': 'Bearer realm="voicegate-admin"' });
}

/** The caller of `authorization`, or a 401 ProblemError. Store failures propagate (→ 503). */
export async function authenticate(authorization: string | undefined, o: AuthOptions): Promise<Principal> {
  if (authorization === undefined || authorization === '') throw unauthorized('missing_token', 'send Authorization: Bearer <JWT or vg_ service key>');
  const m = BEARER.exec(authorization);
  if (!m) throw unauthorized('malformed_token', 'the Authorization header must be "Bearer <token>"');
  const credential = m[1]!;
  if (isServiceKeyShaped(credential)) {
    const match = await o.store.findServiceKeyByHash(hashServiceKey(credential));
    if (!match || !match.valid) throw unauthorized('invalid_service_key', 'the service key is unknown, revoked or expired');
    const subject = match.serviceAccount.subject;
    return { subject, member: subject, tokenTeams: [], admin: o.adminSubjects.includes(subject) };
  }
  const result = await o.verifier.verify(credential);
  if (!result.ok) throw unauthorized(result.code, result.message);
  const subject = `user:${result.identity.user}` as const;
  return {
    subject,
    member: result.identity.user,
    tokenTeams: result.identity.teams,
    admin: result.identity.roles.includes(o.adminRole) || o.adminSubjects.includes(subject),
  };
}

export function forbidden(detail = 'this needs an administrator'): never {
  throw new ProblemError(problem(403, 'forbidden', detail));
}


/** Whether `p` is a manager of `account` (false when the account does not exist). */
export async function managesAccount(store: ControlStore, p: Principal, account: string): Promise<boolean> {
  if (!(await store.getAccount(account))) return false;
  const managers = (await all((cursor) => store.listCollaborators(account, { limit: 500, cursor }))).filter((c) => c.role === 'manager');
  for (const c of managers) {
    if (c.subject === p.subject) return true;
    if (!c.subject.startsWith('team:')) continue;
    const team = c.subject.slice('team:'.length);
    if (p.tokenTeams.includes(team)) return true;
    if (!(await store.getTeam(team))) continue;
    const members = await all((cursor) => store.listTeamMembers(team, { limit: 500, cursor }));
    if (members.some((m) => m.member === p.member)) return true;
  }
  return false;
}
