/**
 * The arithmetic of the cross-pod grant ledger (issue 12, point 4), pure: what one entry of the
 * ledger holds, how a pod settles its grant in it (borrow, give back, heartbeat, reclaim the
 * expired leases of others), and what the pod may admit against meanwhile.
 *
 * One entry per account pool (`tts` or `stt` units) lists every pod's grant with the end of its
 * lease. A pod changes the entry only by compare-and-set on the revision it read
 * ({@link GrantStore}), so two pods never both take the same free unit. The sum of live grants
 * never exceeds the account's units because a settle only grows a grant into units no live lease
 * holds, and a pod
 * - uses a larger grant only once the write that recorded it succeeded,
 * - lowers what it admits against *before* the write that gives units back,
 * - stops admitting entirely at `lease end − safety margin` by its own clock, so a reclaimer whose
 *   clock runs ahead by less than the margin never takes units the pod may still use.
 *
 * @example
 * const plan = planSettle(read?.entry, 'pod-a', { total: 4, need: 1, held: 1, demanded: false, now, ...DEFAULT_GRANT_POLICY });
 * const local = beforeWrite(view, plan);            // lower first
 * const ok = await store.write(key, plan.entry, read?.revision);
 * view = afterWrite(local, plan, ok);               // grow only on success
 */
import { z } from 'zod';

/** The grant of one pod in one entry. `expiresAt` is by the clock of the pod that wrote it. */
export interface PodGrant {
  readonly units: number;
  readonly expiresAt: number;
  /** Units the pod asked for and did not get: tells pods with idle units to give them back. */
  readonly wants: number;
}

/** One entry of the ledger: the grants of every pod on one account pool. */
export interface GrantEntry {
  readonly grants: Readonly<Record<string, PodGrant>>;
}

export const EMPTY_ENTRY: GrantEntry = { grants: {} };

const POD_GRANT = z.object({
  units: z.number().int().nonnegative(),
  expiresAt: z.number().finite(),
  wants: z.number().int().nonnegative(),
});
const ENTRY = z.object({ grants: z.record(z.string(), POD_GRANT) });

/**
 * Reads an entry from the store's bytes. An entry that does not parse cannot be trusted to say
 * which units are free, so it reads as `undefined` and the caller grants nothing (fail closed).
 */
export function decodeGrantEntry(text: string): GrantEntry | undefined {
  try {
    const r = ENTRY.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function encodeGrantEntry(entry: GrantEntry): string {
  return JSON.stringify(entry);
}

/** A ledger entry as read, with the revision a compare-and-set must name. */
export interface GrantRead {
  readonly entry: GrantEntry;
  readonly revision: number;
}

/**
 * Where entries live: a NATS KV bucket with one replica, or a PostgreSQL row updated under its
 * version. Both give the same two operations.
 */
export interface GrantStore {
  /** The entry and its revision, or undefined when the key was never written. */
  read(key: string): Promise<GrantRead | undefined>;
  /** Writes if the entry is still at `revision` (`undefined`: only if absent); false on a conflict. */
  write(key: string, entry: GrantEntry, revision: number | undefined): Promise<boolean>;
  close(): Promise<void>;
}

export interface GrantPolicy {
  /** How long a written grant lasts without a heartbeat (the ledger's lease). */
  readonly leaseMs: number;
  /** The pod stops admitting this long before its lease ends by its own clock (bounds clock skew between pods). */
  readonly marginMs: number;
  /** Units kept beyond those in use while nobody else waits, so the next request is admitted without a round trip. */
  readonly headroom: number;
  /** Idle units kept beyond the headroom before giving them back (hysteresis against borrow/return churn). */
  readonly slack: number;
}

/**
 * A dead pod's units are free `leaseMs` after its last heartbeat and are reclaimed by the next pod
 * that settles (every heartbeat, 1 s): within about 4 s. The margin allows pods' clocks to differ
 * by up to 750 ms (NTP keeps them within milliseconds).
 */
export const DEFAULT_GRANT_POLICY: GrantPolicy = { leaseMs: 3000, marginMs: 750, headroom: 1, slack: 1 };

/** Whether a grant is still live at `now`. */
const live = (g: PodGrant, now: number): boolean => g.expiresAt > now;

/** Units held by live leases at `now` (except `except`'s). */
export function liveUnits(entry: GrantEntry, now: number, except?: string): number {
  let sum = 0;
  for (const [pod, g] of Object.entries(entry.grants)) if (pod !== except && live(g, now)) sum += g.units;
  return sum;
}

export interface SettleInput extends GrantPolicy {
  /** The account's units (its `concurrency`). */
  readonly total: number;
  /** Units this pod has in use now: it never records less than this. */
  readonly need: number;
  /** The grant this pod holds now, as it believes. */
  readonly held: number;
  /** An admission was refused here for lack of grant, recently (the adapter keeps it two heartbeats). */
  readonly demanded: boolean;
  /** This pod's clock. */
  readonly now: number;
}

export interface SettlePlan {
  /** The entry to write: expired leases dropped, this pod's grant and lease renewed. */
  readonly entry: GrantEntry;
  /** What this pod may admit against once the write succeeded. */
  readonly granted: number;
  /** What it may admit against from now on, before the write: never more than it holds. */
  readonly cap: number;
  /** The end of the lease the write records, by this pod's clock. */
  readonly expiresAt: number;
}

/**
 * How many units the pod wants. It needs what it uses plus the headroom; when other pods are
 * waiting it gives up the headroom and, beyond its fair share, stops taking new work so that units
 * drain to them (it still records what it uses: a grant below the units in use would let others
 * overshoot).
 */
export function desiredUnits(i: Pick<SettleInput, 'need' | 'held' | 'demanded' | 'headroom' | 'slack' | 'total'>, othersWant: number, pods: number): number {
  let base = i.need + (othersWant > 0 ? 0 : i.headroom);
  if (i.demanded) base = Math.max(base, i.need + 1);
  if (othersWant > 0) return Math.min(base, Math.ceil(i.total / Math.max(1, pods)));
  // Hysteresis: idle units are kept up to `slack` beyond the target, then given back together.
  if (i.held > base && i.held - base <= i.slack) return i.held;
  return base;
}

/** The pod's settle of one entry: reclaim expired leases, then borrow, give back or renew. */
export function planSettle(entry: GrantEntry | undefined, pod: string, i: SettleInput): SettlePlan {
  const grants: Record<string, PodGrant> = {};
  let othersWant = 0;
  let pods = 1;
  for (const [p, g] of Object.entries(entry?.grants ?? {})) {
    if (p === pod || !live(g, i.now)) continue; // expired leases are reclaimed here
    grants[p] = g;
    othersWant += g.wants;
    if (g.units > 0 || g.wants > 0) pods++;
  }
  const desired = desiredUnits(i, othersWant, pods);
  const room = Math.max(0, i.total - liveUnits({ grants }, i.now));
  const record = Math.min(room, Math.max(desired, i.need));
  const granted = Math.min(record, desired);
  // Others give way only to real demand: what is in use, plus one after a refusal. Headroom is not
  // demand — with a cap smaller than the pods (a team's max_units: 2 behind three pods), idle pods
  // wanting headroom would hold a busy pod to its fair share and keep an idle unit circling.
  const urgent = i.demanded ? i.need + 1 : i.need;
  const wants = Math.max(0, Math.min(desired, urgent) - record);
  const expiresAt = i.now + i.leaseMs;
  if (record > 0 || wants > 0) grants[pod] = { units: record, expiresAt, wants };
  return { entry: { grants }, granted, cap: Math.min(i.held, granted), expiresAt };
}

/** What a pod may admit against on one pool, as it knows it. */
export interface LocalGrant {
  readonly units: number;
  /** Admit nothing from this time on (its clock): lease end minus the margin. */
  readonly validUntil: number;
}

export const NO_GRANT: LocalGrant = { units: 0, validUntil: -Infinity };

/** Before the write: lower what is admitted against to the plan's cap (never raise it). */
export function beforeWrite(local: LocalGrant, plan: SettlePlan): LocalGrant {
  return { units: Math.min(local.units, plan.cap), validUntil: local.validUntil };
}

/** After the write: on success the recorded grant and lease hold; on failure nothing grows. */
export function afterWrite(local: LocalGrant, plan: SettlePlan, ok: boolean, marginMs: number): LocalGrant {
  if (!ok) return local;
  return { units: plan.granted, validUntil: plan.expiresAt - marginMs };
}

/** The units a pod may admit against at `now` by its clock. */
export function admissible(local: LocalGrant, now: number): number {
  return now < local.validUntil ? local.units : 0;
}
