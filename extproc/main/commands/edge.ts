/**
 * `voicegate edge`: the embedded data plane. Decides in process, or asks `voicegate extproc` over
 * gRPC (`--authz grpc://host:port`), proxies to the provider and meters every exchange.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { StaticSnapshotSource } from '../../core/config/snapshot.ts';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import { createGrpcAuthorizer } from '../../adapters/envoy/authz-client.ts';
import { createExchangeMetrics } from '../../adapters/prometheus/exchange-metrics.ts';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { closing, defineCommand, loadConfig, serve } from '../command.ts';
import { edgeComponent, sidePortComponent } from '../components/listeners.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { usageComponent } from '../components/usage.ts';
import { createLogger } from '../logger.ts';
import { EDGE_OPTIONS } from '../options.ts';
import { reloadComponent } from '../reload.ts';

export const edgeCommand = defineCommand("the embedded data plane (Envoy's job where there is no Envoy)", EDGE_OPTIONS, async (o, ctx) => {
  const snapshot = await loadConfig(ctx, o.config);
  if (!snapshot) return 1;
  const source = new StaticSnapshotSource(snapshot);
  const logger = createLogger({ name: 'voicegate-edge', level: ctx.env['LOG_LEVEL'] });
  const grpcClient = o.authz === 'inproc' ? undefined : createGrpcAuthorizer(o.authz.slice('grpc://'.length), { timeoutMs: o.authzTimeout });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const usage = usageComponent({
    ...(o.nats ? { natsUrl: o.nats } : {}),
    spoolDir: o.spoolDir,
    stream: o.stream,
    subjectPrefix: o.subjectPrefix,
    logger,
    metrics: usageMetrics(registry),
  });
  const observe = composeObservers(usage.observe, createExchangeMetrics(registry));
  const side = sidePortComponent({ host: o.host, port: o.httpPort, registry, ready: () => source.current() !== undefined });
  const edge = edgeComponent({ host: o.host, port: o.port, source, authorizer: grpcClient ?? createAuthorizer(source), logger, ...(observe ? { observe } : {}) });
  const components = [
    closing('configuration', () => source.close()),
    closing('gRPC authz client', () => grpcClient?.close()),
    telemetryComponent('voicegate-edge'),
    usage,
    side,
    edge,
    reloadComponent(source, o.config, logger),
  ];
  return serve(ctx, components, o.drainDelay, () => {
    logger.info({ url: edge.url, authz: o.authz, metricsPort: side.port }, 'edge ready');
  });
});
