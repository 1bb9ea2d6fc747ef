/**
 * Every long-running piece of a process is a Component. The runner starts them in order and closes
 * the started ones in reverse in a `finally`, so a failure at any step — a busy port, an
 * unreachable database — releases everything before the exit code is returned, and the process
 * ends instead of hanging on an open socket (Kubernetes only restarts processes that exit).
 */

export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /**
   * Reports not ready (gRPC NOT_SERVING, /readyz 503). Listeners keep accepting until `close`, so
   * load balancers have the drain delay to take the process out of rotation.
   */
  drain(): Promise<void> | void;
  /**
   * Stops accepting and lets in-flight work finish within the component's drain window
   * (`--drain-timeout`), then releases everything. Components close in reverse start order, so
   * the listeners (started last) have ended every exchange before the usage sink (started before
   * them) flushes its spans and closes.
   */
  close(): Promise<void>;
  /** Settles when the component stops on its own after starting (a consumer's fatal error). */
  done?(): Promise<void>;
}

export interface RunOptions {
  readonly signal: AbortSignal;
  /**
   * Between drain and close (`--drain-delay`), so load balancers see "not ready" before connections
   * are refused; the drain window (`--drain-timeout`) starts after it, inside each listener's close.
   */
  readonly drainDelayMs: number;
  /** One line, no trailing newline. */
  readonly report: (line: string) => void;
  /** Runs once everything started (the banner, the "ready" log line). */
  readonly onReady?: () => void | Promise<void>;
}

/** Thrown by a component whose message is already the line a user should read. */
export class StartError extends Error {
  override readonly name = 'StartError';
}

/** The one line for a listen failure, naming the port and the component. */
export function listenError(err: unknown, port: number | undefined, what: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(String(e.message))) return new StartError(`port ${port} (${what}) is already in use`, { cause: err });
  if (e.code === 'EACCES') return new StartError(`port ${port} (${what}) needs privileges`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

/** Starts, serves until `signal` aborts (or a component stops on its own), drains, closes; the exit code. */
export async function runComponents(components: readonly Component[], opts: RunOptions): Promise<number> {
  const started: Component[] = [];
  try {
    for (const c of components) {
      if (opts.signal.aborted) return 0;
      try {
        await c.start();
      } catch (err) {
        opts.report(err instanceof StartError ? err.message : `cannot start ${c.name}: ${messageOf(err)}`);
        return 1;
      }
      started.push(c);
    }
    await opts.onReady?.();
    const stopped = await untilStopped(started, opts.signal);
    if (stopped) {
      opts.report(stopped.error === undefined ? `${stopped.name} stopped` : `${stopped.name} failed: ${messageOf(stopped.error)}`);
    }
    for (const c of [...started].reverse()) await Promise.resolve(c.drain()).catch(() => undefined);
    if (!stopped && opts.drainDelayMs > 0) await new Promise((r) => setTimeout(r, opts.drainDelayMs));
    return stopped?.error === undefined ? 0 : 1;
  } finally {
    for (const c of started.reverse()) {
      await c.close().catch((err: unknown) => opts.report(`closing ${c.name}: ${messageOf(err)}`));
    }
  }
}

type Stopped = { name: string; error?: unknown } | undefined;

function untilStopped(started: readonly Component[], signal: AbortSignal): Promise<Stopped> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(undefined);
    signal.addEventListener('abort', () => resolve(undefined), { once: true });
    for (const c of started) {
      c.done?.().then(
        () => resolve({ name: c.name }),
        (error: unknown) => resolve({ name: c.name, error: error ?? 'unknown error' }),
      );
    }
  });
}

export function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(messageOf).join('; ');
  return err instanceof Error ? err.message : String(err);
}
