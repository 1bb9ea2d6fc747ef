/**
 * One idle bound per exchange, as Envoy's `idle_timeout` / `stream_idle_timeout`: the exchange ends
 * when no bytes moved in either direction for `timeoutMs`. Activity only stores a timestamp; a
 * single timer re-arms itself for the remaining time when it fires early, so a busy stream costs one
 * `performance.now()` per chunk instead of a clearTimeout/setTimeout pair.
 */
import { performance } from 'node:perf_hooks';

export interface IdleTimer {
  /** Records activity now. */
  touch(): void;
  /** Cancels the bound for good (the exchange ended some other way). */
  stop(): void;
}

const DISABLED: IdleTimer = Object.freeze({ touch() {}, stop() {} });

/**
 * Starts the bound now. `timeoutMs <= 0` disables it, as `0s` does in Envoy. `onIdle` runs at most
 * once, after which the timer is stopped.
 */
export function startIdleTimer(timeoutMs: number, onIdle: () => void): IdleTimer {
  if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) return DISABLED;
  let last = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const idleFor = performance.now() - last;
    if (idleFor >= timeoutMs) {
      timer = undefined;
      onIdle();
      return;
    }
    timer = setTimeout(check, timeoutMs - idleFor);
    // The sockets keep the process alive; this bound alone must not.
    timer.unref();
  };
  timer = setTimeout(check, timeoutMs);
  timer.unref();
  return {
    touch() {
      last = performance.now();
    },
    stop() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
