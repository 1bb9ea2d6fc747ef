/**
 * `voicegate extproc --config F [--port 50051] [--host 0.0.0.0] [--http-port 9464]`: the service
 * Envoy calls — ext_authz Check, ext_proc Process, the access-log service and gRPC health — plus an
 * HTTP side port with /healthz, /readyz and /metrics. Usage spans go to NATS when NATS_URL is set,
 * otherwise to a local file.
 */
import { parseArgs } from 'node:util';
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { loadSnapshotFromFile } from '../../adapters/files/config-file.ts';
import { reloadOnSighup } from '../reload.ts';
import { StaticSnapshotSource, type SnapshotSource } from '../../core/config/snapshot.ts';
import { registerAccessLogService } from '../../adapters/envoy/access-log-service.ts';
import { registerExtProcService } from '../../adapters/envoy/ext-proc-service.ts';
import { startExtprocServer, type ExtprocServerOptions } from '../../adapters/envoy/server.ts';
import { startSidePort } from '../../adapters/http/side-port.ts';
import { createLogger } from '../logger.ts';
import { createAuthzMetrics } from '../../adapters/prometheus/authz-metrics.ts';
import { createUsagePipeline } from './usage.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import { waitForShutdown } from '../signals.ts';

const USAGE = 'usage: voicegate extproc --config FILE [--host 0.0.0.0] [--port 50051] [--http-port 9464] [--spool-dir DIR]';

function port(text: string | undefined, fallback: number): number | undefined {
  if (text === undefined) return fallback;
  const n = Number(text);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/** ext_proc and the access-log service, which turn Envoy's view of each request into a span. */
export function envoyUsageServices(sink: SpanSink, source: SnapshotSource): ExtprocServerOptions['extraServices'] {
  return [
    (s, protos) => registerExtProcService(s, protos, sink),
    (s, protos) => registerAccessLogService(s, protos, sink, { snapshot: () => source.current() }),
  ];
}

export async function extprocCommand(args: string[], signal?: AbortSignal): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        config: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'http-port': { type: 'string' },
        'spool-dir': { type: 'string' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const grpcPort = port(values.port, 50051);
  const httpPort = port(values['http-port'], 9464);
  if (!values.config || grpcPort === undefined || httpPort === undefined) {
    process.stderr.write(`${values.config ? 'ports must be integers 0–65535' : '--config is required'}\n${USAGE}\n`);
    return 2;
  }
  const logger = createLogger({ name: 'voicegate-extproc' });
  let source: StaticSnapshotSource;
  try {
    // Configuration is complete and valid before any listener opens.
    source = new StaticSnapshotSource(await loadSnapshotFromFile(values.config));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  const metrics = createAuthzMetrics();
  const usage = await createUsagePipeline({
    ...(process.env['NATS_URL'] ? { natsUrl: process.env['NATS_URL'] } : {}),
    spoolDir: values['spool-dir'] ?? '.voicegate/extproc',
    logger,
    snapshot: () => source.current(),
  });
  const server = await startExtprocServer({
    host: values.host ?? '0.0.0.0',
    port: grpcPort,
    authorizer: createAuthorizer(source),
    source,
    logger,
    metrics,
    extraServices: envoyUsageServices(usage.sink, source),
  });
  const side = await startSidePort({ port: httpPort, registry: metrics.registry, ready: () => source.current() !== undefined });
  const stopReload = reloadOnSighup(source, values.config, logger);
  logger.info({ grpcPort: server.port, httpPort: side.port, config: source.current()?.origin }, 'extproc ready');

  const why = await waitForShutdown(signal);
  logger.info({ why }, 'extproc draining');
  // Report NOT_SERVING first so Envoy's health check moves traffic away, then stop.
  stopReload();
  server.drain();
  await server.close();
  await side.close();
  await usage.close();
  return 0;
}
