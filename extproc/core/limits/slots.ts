/**
 * Leases taken in Envoy's `Check`, held until the request they admitted ends. Check cannot see the
 * end; it hands Envoy a slot id (dynamic metadata) and whichever of these comes first releases it:
 * the ext_proc stream of that request ending (`stream`), the access-log entry of that request
 * (`access_log`), or — for a slot no ext_proc stream ever claimed — the sweeper, `claimTimeoutMs`
 * after Check (`sweeper`: Envoy answered the client locally, the request died between the filters,
 * or ext_proc, which may fail open, never ran). `check_cancelled`: the Check call itself was
 * cancelled before its answer went out, so no request carries the slot. `shutdown` releases
 * everything left.
 *
 * Each slot is released once: the entry is removed before its lease is released, so a second
 * cause finds nothing (and the lease's own release is idempotent besides). Pure: the caller owns
 * the clock and the timer that calls {@link SlotTable.sweep}.
 *
 * @example
 * const slots = new SlotTable({ claimTimeoutMs: 5000 });
 * const id = slots.hold(lease);        // Check
 * slots.claim(id);                     // ext_proc request_headers
 * slots.release(id, 'stream');         // ext_proc stream ended → true; the access log later → false
 */
import { randomBytes } from 'node:crypto';
import type { Lease } from './ledger.ts';

export type SlotReleaseCause = 'stream' | 'access_log' | 'sweeper' | 'check_cancelled' | 'shutdown';
export const SLOT_RELEASE_CAUSES: readonly SlotReleaseCause[] = ['stream', 'access_log', 'sweeper', 'check_cancelled', 'shutdown'];

/** Default wait for an ext_proc stream to claim a slot; Envoy opens it right after Check allows. */
export const DEFAULT_SLOT_CLAIM_TIMEOUT_MS = 5_000;

export interface SlotTableOptions {
  readonly claimTimeoutMs?: number;
  readonly now?: () => number;
  /**
   * Prefix of this table's ids (default random): with several extproc pods behind one Envoy, a
   * slot id another pod issued is recognised as foreign and left alone.
   */
  readonly prefix?: string;
  /** Called once per released slot (metrics). */
  readonly onRelease?: (cause: SlotReleaseCause, lease: Lease) => void;
}

interface Held {
  readonly lease: Lease;
  readonly at: number;
}

export class SlotTable {
  readonly claimTimeoutMs: number;
  readonly #now: () => number;
  readonly #prefix: string;
  readonly #onRelease: ((cause: SlotReleaseCause, lease: Lease) => void) | undefined;
  /** Insertion order is Check order, so the sweeper stops at the first slot still in time. */
  readonly #unclaimed = new Map<string, Held>();
  readonly #claimed = new Map<string, Held>();
  #sequence = 0;

  constructor(opts: SlotTableOptions = {}) {
    this.claimTimeoutMs = opts.claimTimeoutMs ?? DEFAULT_SLOT_CLAIM_TIMEOUT_MS;
    this.#now = opts.now ?? Date.now;
    this.#prefix = `${opts.prefix ?? randomBytes(4).toString('hex')}.`;
    this.#onRelease = opts.onRelease;
  }

  /** Holds `lease` under a new slot id (not a secret: it only names a lease of this process). */
  hold(lease: Lease): string {
    const id = this.#prefix + (++this.#sequence).toString(36);
    this.#unclaimed.set(id, { lease, at: this.#now() });
    return id;
  }

  /** An ext_proc stream took charge of `id`: the sweeper leaves it alone. False when unknown or already claimed. */
  claim(id: string): boolean {
    const held = this.#unclaimed.get(id);
    if (!held) return false;
    this.#unclaimed.delete(id);
    this.#claimed.set(id, held);
    return true;
  }

  /** Releases `id`'s lease; true the one time it did. */
  release(id: string, cause: SlotReleaseCause): boolean {
    const held = this.#unclaimed.get(id) ?? this.#claimed.get(id);
    if (!held) return false;
    this.#unclaimed.delete(id);
    this.#claimed.delete(id);
    if (held.lease.release()) this.#onRelease?.(cause, held.lease);
    return true;
  }

  /** Releases every unclaimed slot older than the claim timeout; returns how many. */
  sweep(): number {
    const deadline = this.#now() - this.claimTimeoutMs;
    let n = 0;
    for (const [id, held] of this.#unclaimed) {
      if (held.at > deadline) break;
      this.release(id, 'sweeper');
      n++;
    }
    return n;
  }

  /** Releases everything (the process is closing). */
  releaseAll(): number {
    const ids = [...this.#unclaimed.keys(), ...this.#claimed.keys()];
    for (const id of ids) this.release(id, 'shutdown');
    return ids.length;
  }

  /** Whether `id` was issued by this table (held or not). */
  issued(id: string): boolean {
    return id.startsWith(this.#prefix);
  }

  get held(): number {
    return this.#unclaimed.size + this.#claimed.size;
  }

  get unclaimed(): number {
    return this.#unclaimed.size;
  }
}
