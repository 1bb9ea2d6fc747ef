/**
 * Bounded waits at the team boundary: an exchange refused for concurrency, on a chain one of whose
 * teams has `wait` (config `limits.teams.<name>.wait`), queues under that team instead of getting
 * the 429 at once — up to `max_waiters` per team, for at most `max_ms` — and is admitted when units
 * free up.
 *
 * Fairness: when capacity frees, the teams with waiters are served round-robin (a team that was
 * just served goes to the back of the ring), and within a team in arrival order; so a busy team
 * with many waiters cannot take every freed unit from a quieter one sharing the same account.
 * Within a team a waiter whose own limits are still full (its user's cap, another account) is
 * passed over for the next one that fits, rather than blocking the team's whole queue.
 *
 * Pure and synchronous: the caller owns the clock and says when to look again ({@link WaitQueue.pump}
 * after a release, {@link WaitQueue.expire} on a timer); an attempt is a synchronous ledger acquire,
 * so a waiter is admitted all or nothing exactly as an arrival is. A waiter that was cancelled or
 * timed out is never attempted again, so it holds nothing.
 *
 * @example
 * const q = new WaitQueue<Lease>();
 * const t = q.enqueue('voice', { maxMs: 2000, maxWaiters: 2 }, () => tryAcquire(), (end) => resolve(end));
 * lease.release(); q.pump(); // the first waiter that fits now holds the unit
 */
import type { Snapshot } from '../config/snapshot.ts';
import type { Chain } from './kinds.ts';
import type { Refusal, WaitOutcome } from './ledger.ts';

/** A team's bounded wait, as `limits.teams.<name>.wait` configures it. */
export interface WaitPolicy {
  readonly maxMs: number;
  readonly maxWaiters: number;
}

export type { WaitOutcome };
export const WAIT_OUTCOMES: readonly WaitOutcome[] = ['admitted', 'timed_out', 'cancelled'];

export type WaitEnd<T> =
  | { readonly outcome: 'admitted'; readonly value: T; readonly waitedMs: number }
  | { readonly outcome: 'timed_out' | 'cancelled'; readonly waitedMs: number };

/** A queued waiter, to cancel it by. */
export interface WaitTicket {
  readonly team: string;
  readonly id: number;
}

interface Entry<T> {
  readonly id: number;
  readonly team: string;
  readonly at: number;
  readonly deadline: number;
  readonly attempt: () => T | undefined;
  readonly settle: (end: WaitEnd<T>) => void;
}

export interface WaitQueueOptions {
  readonly now?: () => number;
}

export class WaitQueue<T> {
  readonly #now: () => number;
  /** Teams with waiters, in round-robin order (Map insertion order: the next to serve first). */
  readonly #teams = new Map<string, Entry<T>[]>();
  readonly #byId = new Map<number, Entry<T>>();
  #sequence = 0;
  #pumping = false;
  #again = false;

  constructor(opts: WaitQueueOptions = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Queues a waiter under `team`: `attempt` is called whenever capacity may have freed and returns
   * what it was granted (it then holds it) or undefined; `settle` is called exactly once with how
   * the wait ended. Undefined when the team already has `maxWaiters` waiting (answer at once).
   */
  enqueue(team: string, policy: WaitPolicy, attempt: () => T | undefined, settle: (end: WaitEnd<T>) => void): WaitTicket | undefined {
    const queue = this.#teams.get(team);
    if ((queue?.length ?? 0) >= policy.maxWaiters) return undefined;
    const at = this.#now();
    const entry: Entry<T> = { id: ++this.#sequence, team, at, deadline: at + policy.maxMs, attempt, settle };
    if (queue) queue.push(entry);
    else this.#teams.set(team, [entry]);
    this.#byId.set(entry.id, entry);
    return { team, id: entry.id };
  }

  /** The caller left: the waiter leaves the queue (it never held anything). False when no longer waiting. */
  cancel(ticket: WaitTicket): boolean {
    const entry = this.#byId.get(ticket.id);
    if (!entry) return false;
    this.#remove(entry);
    entry.settle({ outcome: 'cancelled', waitedMs: this.#now() - entry.at });
    return true;
  }

  /** Ends every wait past its deadline (`timed_out`); returns how many. */
  expire(): number {
    const t = this.#now();
    const late = [...this.#byId.values()].filter((e) => e.deadline <= t);
    for (const e of late) {
      this.#remove(e);
      e.settle({ outcome: 'timed_out', waitedMs: t - e.at });
    }
    return late.length;
  }

  /**
   * Admits waiters while any fits: the teams in round-robin order, each team's first waiter that
   * fits; the served team goes to the back of the ring. Returns how many were admitted. Re-entrant
   * calls (a settle that releases) are folded into the running one.
   */
  pump(): number {
    if (this.#pumping) {
      this.#again = true;
      return 0;
    }
    this.#pumping = true;
    let admitted = 0;
    try {
      do {
        this.#again = false;
        let served = true;
        while (served) {
          served = false;
          for (const [team, queue] of this.#teams) {
            const hit = this.#first(queue);
            if (!hit) continue;
            const [entry, value] = hit;
            this.#remove(entry);
            // Round-robin: the team just served waits behind every other waiting team.
            const rest = this.#teams.get(team);
            if (rest) {
              this.#teams.delete(team);
              this.#teams.set(team, rest);
            }
            admitted++;
            served = true;
            entry.settle({ outcome: 'admitted', value, waitedMs: this.#now() - entry.at });
            break;
          }
        }
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
    return admitted;
  }

  /** Waiters queued in all. */
  get size(): number {
    return this.#byId.size;
  }

  /** Waiters queued under `team`. */
  sizeOf(team: string): number {
    return this.#teams.get(team)?.length ?? 0;
  }

  /** The earliest deadline of any waiter (for the caller's timer); undefined when none waits. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const e of this.#byId.values()) if (next === undefined || e.deadline < next) next = e.deadline;
    return next;
  }

  #first(queue: readonly Entry<T>[]): [Entry<T>, T] | undefined {
    for (const entry of queue) {
      const value = entry.attempt();
      if (value !== undefined) return [entry, value];
    }
    return undefined;
  }

  #remove(entry: Entry<T>): void {
    this.#byId.delete(entry.id);
    const queue = this.#teams.get(entry.team);
    if (!queue) return;
    const i = queue.indexOf(entry);
    if (i !== -1) queue.splice(i, 1);
    if (queue.length === 0) this.#teams.delete(entry.team);
  }
}

/**
 * Whether a refusal may be waited out: a concurrency limit (units, sessions, an account's units or
 * TTS connection slots), which frees when an exchange ends. `requests_per_minute` is not: its
 * Retry-After is exact, so the client is told when rather than held on an open connection; nor is
 * an account this pod does not know (`max` 0), which no release will ever make room on.
 */
export function waitable(r: Refusal): boolean {
  if (r.limit === 'requests_per_minute') return false;
  return r.max > 0;
}

/**
 * The team a chain's exchange waits under, and its policy: the first of the chain's teams (in the
 * order the token lists them) whose limits configure `wait`. Undefined when none does.
 */
export function waitingTeam(snapshot: Snapshot, chain: Chain): { readonly team: string; readonly policy: WaitPolicy } | undefined {
  const teams = snapshot.principalLimits?.teams;
  if (!teams) return undefined;
  for (const team of chain.teams) {
    const wait = teams.get(team)?.wait;
    if (wait) return { team, policy: wait };
  }
  return undefined;
}
