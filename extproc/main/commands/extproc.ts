/**
 * `voicegate extproc`: the services Envoy calls — ext_authz Check, ext_proc Process, the
 * access-log service and gRPC health — plus a side port with /healthz, /readyz and /metrics.
 * Usage spans go to NATS when --nats (NATS_URL) is set, otherwise to a local file.
 */
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { createAuthzMetrics } from '../../adapters/prometheus/authz-metrics.ts';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { defineCommand, report, serve } from '../command.ts';
import { configSourceFromFlags } from '../config-source.ts';
import { grpcComponent, serverTlsFromFlags, sidePortComponent } from '../components/listeners.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { usageComponent } from '../components/usage.ts';
import { envoyUsageServices } from '../envoy-usage-services.ts';
import { createLogger } from '../logger.ts';
import { limitsComponent, resolveLimitsMode } from '../components/limits.ts';
import { limitMetrics } from '../../adapters/prometheus/limit-metrics.ts';
import { SlotTable } from '../../core/limits/slots.ts';
import { EXTPROC_OPTIONS } from '../options.ts';

export const extprocCommand = defineCommand('the gRPC service Envoy calls: ext_authz Check, ext_proc, access logs, health', EXTPROC_OPTIONS, async (o, ctx) => {
  const tls = serverTlsFromFlags(o);
  if (typeof tls === 'string') {
    report(ctx, tls);
    return 2;
  }
  const logger = createLogger({ name: 'voicegate-extproc', level: ctx.env['LOG_LEVEL'] });
  // Configuration is complete and valid before any listener opens.
  const config = await configSourceFromFlags(ctx, o, logger);
  if (typeof config === 'number') return config;
  const { source } = config;
  const limitsMode = resolveLimitsMode(o.limits, o.nats);
  if (!limitsMode) {
    report(ctx, '--limits cluster needs NATS (--nats or NATS_URL): the grant ledger is a NATS KV bucket');
    return 2;
  }
  const limits = limitsComponent({ mode: limitsMode, ...(o.nats ? { natsUrl: o.nats } : {}), bucket: o.grantBucket, snapshot: () => source.current(), logger });
  const metrics = createAuthzMetrics();
  const limited = limitMetrics(
    metrics.registry,
    limits.ledger,
    () => source.current()?.accounts.values() ?? [],
    () => source.current()?.principalLimits?.teams ?? [],
  );
  // Check takes the units; the ext_proc stream, the access-log entry or the sweeper gives them back.
  const slots = new SlotTable({ claimTimeoutMs: o.slotClaimTimeout, onRelease: (cause) => limited.slotReleased(cause) });
  const usage = usageComponent({
    ...(o.nats ? { natsUrl: o.nats } : {}),
    spoolDir: o.spoolDir,
    spoolMaxBytes: o.spoolMaxBytes,
    spanFileMaxBytes: o.spanFileMaxBytes,
    spanFileKeep: o.spanFileKeep,
    stream: o.stream,
    subjectPrefix: o.subjectPrefix,
    logger,
    metrics: usageMetrics(metrics.registry),
  });
  const grpc = grpcComponent({
    host: o.host,
    port: o.port,
    ...(o.socket ? { socketPath: o.socket } : {}),
    ...(tls ? { tls } : {}),
    insecure: o.insecure,
    authorizer: createAuthorizer(source),
    source,
    logger,
    metrics,
    limits: { ledger: limited.ledger, slots },
    extraServices: envoyUsageServices(usage.sink, source, slots),
  }, { drainTimeoutMs: o.drainTimeout });
  const side = sidePortComponent({ host: o.host, port: o.httpPort, registry: metrics.registry, ready: () => source.current() !== undefined });
  // The grant ledger starts before the gRPC server (the first Checks find a grant) and closes after
  // it (the server's close releases what Check still held, then the grants go back).
  const components = [telemetryComponent('voicegate-extproc'), ...config.first, usage, side, limits, grpc, ...config.last];
  return serve(ctx, components, o.drainDelay, () => {
    logger.info({ ...(o.socket ? { grpcSocket: o.socket } : { grpcPort: grpc.port }), grpcTls: Boolean(tls), httpPort: side.port, config: source.current()?.origin }, 'extproc ready');
  });
});
