/**
 * `requests_per_minute` as an exact sliding window: the times of the last `limit` admissions sit in
 * a ring, and one more is admitted only when the oldest of them is a full window old. So no 60 s
 * interval, wherever it starts, ever holds more than `limit` admissions — a fixed window would let
 * 2 × limit through around a boundary, and the weighted two-window estimate can overshoot too. It
 * costs 8 bytes per allowed request per limited principal (the limit is capped at 100,000 by the
 * schema), and the Retry-After it gives is exact: when the oldest admission leaves the window.
 */

export const RATE_WINDOW_MS = 60_000;

export class SlidingWindow {
  #ring: Float64Array;
  /** Index of the oldest admission once the ring is full; the next slot to write. */
  #head = 0;
  #count = 0;

  constructor(
    limit: number,
    readonly windowMs: number = RATE_WINDOW_MS,
  ) {
    this.#ring = new Float64Array(limit);
  }

  get limit(): number {
    return this.#ring.length;
  }

  /** Milliseconds until one more admission fits; 0 when it fits now. */
  waitMs(nowMs: number): number {
    if (this.#count < this.#ring.length) return 0;
    const oldest = this.#ring[this.#head]!;
    return Math.max(0, oldest + this.windowMs - nowMs);
  }

  /** Records an admission; call only after {@link waitMs} returned 0. */
  take(nowMs: number): void {
    this.#ring[this.#head] = nowMs;
    this.#head = (this.#head + 1) % this.#ring.length;
    if (this.#count < this.#ring.length) this.#count++;
  }

  /**
   * A new limit from a new snapshot: the most recent admissions are kept, so lowering a limit takes
   * effect at once and raising one does not forget what was admitted.
   */
  resize(limit: number): void {
    if (limit === this.#ring.length) return;
    const recent: number[] = [];
    for (let i = 0; i < this.#count; i++) {
      // Oldest first: the ring starts at #head when full, at 0 otherwise.
      const at = this.#count < this.#ring.length ? i : (this.#head + i) % this.#ring.length;
      recent.push(this.#ring[at]!);
    }
    const kept = recent.slice(Math.max(0, recent.length - limit));
    this.#ring = new Float64Array(limit);
    kept.forEach((t, i) => (this.#ring[i] = t));
    this.#count = kept.length;
    this.#head = kept.length % limit;
  }

  /** Admissions within the window ending at `nowMs`. */
  countAt(nowMs: number): number {
    let n = 0;
    for (let i = 0; i < this.#count; i++) if (this.#ring[i]! > nowMs - this.windowMs) n++;
    return n;
  }
}
