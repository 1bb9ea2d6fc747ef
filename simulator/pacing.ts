/**
 * When audio becomes available. `instant` has no timers at all (benchmark upstream); `realistic`
 * delivers the first audio after `firstAudioMs` and then generates `speedFactor`× faster than
 * real time.
 */

export interface Pacing {
  readonly firstAudioMs: number;
  /** Audio seconds produced per wall-clock second; Infinity = no pacing. */
  readonly speedFactor: number;
}

export const INSTANT: Pacing = Object.freeze({ firstAudioMs: 0, speedFactor: Number.POSITIVE_INFINITY });
export const REALISTIC_DEFAULTS: Pacing = Object.freeze({ firstAudioMs: 100, speedFactor: 4 });

export function isInstant(p: Pacing): boolean {
  return p.firstAudioMs <= 0 && p.speedFactor === Number.POSITIVE_INFINITY;
}

/** Milliseconds after the synthesis started at which the first `audioSec` seconds are ready. */
export function readyAtMs(p: Pacing, audioSec: number): number {
  return p.firstAudioMs + (audioSec * 1000) / p.speedFactor;
}

/** A stream that stops emitting once cancelled (client went away). */
export interface Cancellable {
  cancelled: boolean;
}

/**
 * Emits chunk 0…count-1 when each is ready (`endSec(i)`: audio seconds up to the end of chunk i),
 * then calls `finish`. Several due chunks go out in one tick, so pacing costs one timer per
 * batch, not per frame. With the instant profile everything runs synchronously.
 */
export function runPaced(
  p: Pacing,
  count: number,
  endSec: (i: number) => number,
  emit: (i: number) => void,
  finish: () => void,
  token: Cancellable,
): void {
  if (isInstant(p)) {
    for (let i = 0; i < count && !token.cancelled; i++) emit(i);
    if (!token.cancelled) finish();
    return;
  }
  const start = performance.now();
  let i = 0;
  const tick = (): void => {
    if (token.cancelled) return;
    const now = performance.now() - start;
    while (i < count && readyAtMs(p, endSec(i)) <= now) emit(i++);
    if (token.cancelled) return;
    if (i >= count) {
      finish();
      return;
    }
    setTimeout(tick, Math.max(1, readyAtMs(p, endSec(i)) - now));
  };
  tick();
}

/** Resolves after `ms` (immediately, without a timer, for ms ≤ 0). */
export function sleep(ms: number): Promise<void> {
  if (!(ms > 0)) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, ms));
}
