/**
 * What every benchmark child shares: print `READY <port>` once listening, and stop cleanly on
 * SIGTERM/SIGINT or when the parent's pipe on stdin closes — the last one covers a parent that died
 * without cleaning up, so no child outlives a run. A clean exit also lets `--cpu-prof` write its file.
 */
export interface Running {
  readonly port: number;
  close(): Promise<void>;
}

export async function serve(start: () => Promise<Running>): Promise<void> {
  let running: Running;
  try {
    running = await start();
  } catch (err) {
    process.stderr.write(`failed to start: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 3_000);
    force.unref();
    running.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  // With --expose-gc, SIGUSR2 runs a full collection, so that RSS readings compare live memory.
  // Without it the signal is ignored: its default action would end the child (a peer's wrapper).
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('SIGUSR2', () => gc?.());
  process.stdout.write(`READY ${running.port}\n`);
}

/** `--name value` from argv, or the default. */
export function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v !== undefined) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`missing --${name}`);
}
