/**
 * Team membership kept by the control plane, combined with the teams a credential carries: the
 * identity the decision sees has the union, so collaborators, limits by team and spans all read
 * one list.
 */
import type { Identity } from './identity.ts';

/**
 * `identity` with the teams `teamMembers` gives its user added (sorted, de-duplicated). Returns
 * the same object when the store adds nothing, so a cached identity is never copied for nothing.
 *
 * @example
 * withStoreTeams({ issuer: 'i', user: 'alice', teams: ['voice'], roles: [] }, new Map([['alice', ['ops']]]));
 * // { …, teams: ['ops', 'voice'] }
 */
export function withStoreTeams(identity: Identity, teamMembers: ReadonlyMap<string, readonly string[]> | undefined): Identity {
  const extra = teamMembers?.get(identity.user);
  if (!extra || extra.every((t) => identity.teams.includes(t))) return identity;
  return { ...identity, teams: [...new Set([...identity.teams, ...extra])].sort() };
}
