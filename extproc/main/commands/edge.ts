/**
 * `voicegate edge --config F [--host H] [--port 8080] [--authz inproc | grpc://host:port]`:
 * loads the config, builds the authorizer (in process, or Envoy's ext_authz over gRPC against
 * `voicegate extproc`) and serves until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { z } from 'zod';
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import type { Authorizer } from '../../core/decision/types.ts';
import { waitForShutdown } from '../signals.ts';
import { loadSnapshotFromFile } from '../../adapters/files/config-file.ts';
import { reloadOnSighup } from '../reload.ts';
import { StaticSnapshotSource } from '../../core/config/snapshot.ts';
import { createGrpcAuthorizer } from '../../adapters/envoy/authz-client.ts';
import { createLogger } from '../logger.ts';
import { startSidePort } from '../../adapters/http/side-port.ts';
import { createExchangeMetrics } from '../../adapters/prometheus/exchange-metrics.ts';
import { createUsagePipeline } from './usage.ts';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import { startEdge } from '../../adapters/edge/server.ts';

const USAGE = 'usage: voicegate edge --config FILE [--host 0.0.0.0] [--port 8080] [--authz inproc|grpc://host:port] [--http-port 9465] [--spool-dir DIR]';

const argsSchema = z.object({
  config: z.string().min(1, '--config is required'),
  host: z.string().default('0.0.0.0'),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  'http-port': z.coerce.number().int().min(0).max(65535).default(9465),
  'spool-dir': z.string().min(1).default('.voicegate/edge'),
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
      options: {
        config: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        authz: { type: 'string' },
        'http-port': { type: 'string' },
        'spool-dir': { type: 'string' },
      },
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
  const { config, host, port, authz, 'http-port': httpPort, 'spool-dir': spoolDir } = parsed.value;
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
  // Usage spans (NATS when NATS_URL is set, else a local file) and Prometheus metrics of the traffic.
  const usage = await createUsagePipeline({
    ...(process.env['NATS_URL'] ? { natsUrl: process.env['NATS_URL'] } : {}),
    spoolDir,
    logger,
    snapshot: () => snapshotSource.current(),
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const observe = composeObservers(usage.observe, createExchangeMetrics(registry));
  const side = await startSidePort({ host, port: httpPort, registry, ready: () => snapshotSource.current() !== undefined });
  const edge = await startEdge({ host, port, source: snapshotSource, authorizer, logger, ...(observe ? { observe } : {}) });
  const stopReload = reloadOnSighup(snapshotSource, config, logger);
  logger.info({ url: edge.url, authz, metricsPort: side.port }, 'edge ready');

  await waitForShutdown(signal);
  logger.info('edge stopping');
  stopReload();
  await edge.close();
  await side.close();
  await usage.close();
  grpcClient?.close();
  await snapshotSource.close();
  return 0;
}
