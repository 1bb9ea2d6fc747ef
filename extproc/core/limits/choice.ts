/**
 * Which of a model's accounts an exchange is admitted on (issue 12, point 3), pure: the account
 * with most spare units in this pod's grant first, then most free units the cluster's ledger
 * still holds unleased (when the grant source can tell), then the one chosen least recently, so
 * that idle accounts share the load in turn. An account cooling after a provider 429 comes last:
 * it is chosen only when no other can be.
 *
 * @example
 * rankAccounts([
 *   { account: 'a', spare: 1, lastChosen: 5, coolingUntil: 0 },
 *   { account: 'b', spare: 1, lastChosen: 2, coolingUntil: 0 },
 * ], now); // ['b', 'a']: equal spare units, b was chosen longer ago
 */

/** What the ledger knows of one candidate account at the moment of choice. */
export interface AccountStanding {
  readonly account: string;
  /** Units of the pool this pod may still admit against (its grant minus what it holds). */
  readonly spare: number;
  /** Units of the pool no pod holds in the cluster's ledger; undefined when the source cannot tell. */
  readonly clusterFree?: number;
  /** Sequence number of the last admission on it (0: never), lower is longer ago. */
  readonly lastChosen: number;
  /** Cooling (after a provider 429) until this time, by the pod's clock. */
  readonly coolingUntil: number;
}

/** How long an account that answered 429 is passed over: about the time a synthesis takes to end. */
export const COOL_DOWN_MS = 1000;

/** The candidates' names, best first; equal standings keep their given (configuration) order. */
export function rankAccounts(candidates: readonly AccountStanding[], now: number): string[] {
  return candidates
    .map((c, i) => ({ c, i, cooling: c.coolingUntil > now }))
    .sort(
      (x, y) =>
        Number(x.cooling) - Number(y.cooling) ||
        y.c.spare - x.c.spare ||
        (y.c.clusterFree ?? 0) - (x.c.clusterFree ?? 0) ||
        x.c.lastChosen - y.c.lastChosen ||
        x.i - y.i,
    )
    .map(({ c }) => c.account);
}
