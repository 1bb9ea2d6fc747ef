/**
 * `voicegate edge --config F [--host H] [--port 8080] [--authz inproc | grpc://host:port]`:
 * loads the config, builds the authorizer (in process, or Envoy's ext_authz over gRPC against
 * `voicegate extproc`) and serves until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createAuthorizer } from '../authz/authorizer.ts';
import type { Authorizer } from '../authz/types.ts';
import { loadSnapshotFromFile } from '../config/load.ts';
import { reloadOnSighup } from '../config/reload.ts';
import { StaticSnapshotSource } from '../config/snapshot.ts';
import { createGrpcAuthorizer } from '../envoy/authz-client.ts';
import { createLogger } from '../observability/logger.ts';
import { startEdge } from './server.ts';

const USAGE = 'usage: voicegate edge --config FILE [--host 0.0.0.0] [--port 8080] [--authz inproc|grpc://host:port]';

const argsSchema = z.object({
  config: z.string().min(1, '--config is required'),
  host: z.string().default('0.0.0.0'),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  authz: z
    .string()
    .default('inproc')
    .refine((v) => v === 'inproc' || /^grpc:\/\/[^/]+:\d+$/.test(v), '--authz must be "inproc" or grpc://host:port'),
});

/** Parsed command line, or the joined list of everything wrong with it. */
export function parseEdgeArgs(args: string[]): { ok: true; value: z.infer<typeof argsSchema> } | { ok: false; error: string } {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args,
      options: { config: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, authz: { type: 'string' } },
      strict: true,
    }).values;
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  const parsed = argsSchema.safeParse(values);
  if (!parsed.success) return { ok: false, error: parsed.error.issues.map((i) => i.message).join('; ') };
  return { ok: true, value: parsed.data };
}

/** Runs the edge until a signal (or `signal` aborts); resolves to the process exit code. */
export async function edgeCommand(args: string[], signal?: AbortSignal): Promise<number> {
  const parsed = parseEdgeArgs(args);
  if (!parsed.ok) {
    process.stderr.write(`${parsed.error}\n${USAGE}\n`);
    return 2;
  }
  const { config, host, port, authz } = parsed.value;
  const logger = createLogger({ name: 'voicegate-edge' });
  let snapshotSource: StaticSnapshotSource;
  try {
    snapshotSource = new StaticSnapshotSource(await loadSnapshotFromFile(config));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  const grpcClient = authz === 'inproc' ? undefined : createGrpcAuthorizer(authz.slice('grpc://'.length));
  const authorizer: Authorizer = grpcClient ?? createAuthorizer(snapshotSource);
  const edge = await startEdge({ host, port, source: snapshotSource, authorizer, logger });
  const stopReload = reloadOnSighup(snapshotSource, config, logger);
  logger.info({ url: edge.url, authz }, 'edge ready');

  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    signal?.addEventListener('abort', stop, { once: true });
    if (signal?.aborted) stop();
  });
  logger.info('edge stopping');
  stopReload();
  await edge.close();
  grpcClient?.close();
  await snapshotSource.close();
  return 0;
}
