/**
 * `voicegate edge`: the embedded data plane. Decides in process, or asks `voicegate extproc` over
 * gRPC (`--authz grpc://host:port`), proxies to the provider and meters every exchange.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import { createGrpcAuthorizer } from '../../adapters/envoy/authz-client.ts';
import { createExchangeMetrics } from '../../adapters/prometheus/exchange-metrics.ts';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { closing, defineCommand, report, serve } from '../command.ts';
import { configSourceFromFlags } from '../config-source.ts';
import { edgeComponent, sidePortComponent } from '../components/listeners.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { usageComponent } from '../components/usage.ts';
import { limitsComponent, resolveLimitsMode } from '../components/limits.ts';
import { limitMetrics } from '../../adapters/prometheus/limit-metrics.ts';
import { createLogger } from '../logger.ts';
import { EDGE_OPTIONS } from '../options.ts';

export const edgeCommand = defineCommand("the embedded data plane (Envoy's job where there is no Envoy)", EDGE_OPTIONS, async (o, ctx) => {
  const logger = createLogger({ name: 'voicegate-edge', level: ctx.env['LOG_LEVEL'] });
  const config = await configSourceFromFlags(ctx, o, logger);
  if (typeof config === 'number') return config;
  const { source } = config;
  const limitsMode = resolveLimitsMode(o.limits, o.nats);
  if (!limitsMode) {
    report(ctx, '--limits cluster needs NATS (--nats or NATS_URL): the grant ledger is a NATS KV bucket');
    return 2;
  }
  const limits = limitsComponent({ mode: limitsMode, ...(o.nats ? { natsUrl: o.nats } : {}), bucket: o.grantBucket, snapshot: () => source.current(), logger });
  if ((o.authzCert === undefined) !== (o.authzKey === undefined) || ((o.authzCert !== undefined || o.authzServerName !== undefined) && o.authzCa === undefined)) {
    report(ctx, '--authz-cert and --authz-key are given together, and TLS to the decision service needs --authz-ca');
    return 2;
  }
  const tls = o.authzCa ? { ca: o.authzCa, ...(o.authzCert && o.authzKey ? { cert: o.authzCert, key: o.authzKey } : {}), ...(o.authzServerName ? { serverName: o.authzServerName } : {}) } : undefined;
  // grpc-js takes `host:port` and `unix:/path` as they are.
  const target = o.authz.startsWith('grpc://') ? o.authz.slice('grpc://'.length) : o.authz;
  const grpcClient = o.authz === 'inproc' ? undefined : createGrpcAuthorizer(target, { timeoutMs: o.authzTimeout, reconnectMaxMs: o.authzReconnectMax, ...(tls ? { tls } : {}) });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Units in use, grants and refusals on /metrics, read from the ledger the edge admits with.
  const limited = limitMetrics(
    registry,
    limits.ledger,
    () => source.current()?.accounts.values() ?? [],
    () => source.current()?.principalLimits?.teams ?? [],
  );
  const usage = usageComponent({
    ...(o.nats ? { natsUrl: o.nats } : {}),
    spoolDir: o.spoolDir,
    spoolMaxBytes: o.spoolMaxBytes,
    spanFileMaxBytes: o.spanFileMaxBytes,
    spanFileKeep: o.spanFileKeep,
    stream: o.stream,
    subjectPrefix: o.subjectPrefix,
    logger,
    metrics: usageMetrics(registry),
  });
  const observe = composeObservers(usage.observe, createExchangeMetrics(registry));
  const side = sidePortComponent({ host: o.host, port: o.httpPort, registry, ready: () => source.current() !== undefined });
  const edge = edgeComponent({
    host: o.host,
    port: o.port,
    headersTimeoutMs: o.headersTimeout,
    decisionBodyTimeoutMs: o.decisionBodyTimeout,
    maxConnections: o.maxConnections,
    wsMaxPayloadBytes: o.maxWsPayload,
    maxSessionMs: o.maxSession,
    sessionTokenGraceMs: o.sessionTokenGrace,
    source,
    authorizer: grpcClient ?? createAuthorizer(source),
    logger,
    limits: limited.ledger,
    ...(observe ? { observe } : {}),
  }, { drainTimeoutMs: o.drainTimeout });
  const components = [
    closing('configuration', () => source.close()),
    closing('gRPC authz client', () => grpcClient?.close()),
    telemetryComponent('voicegate-edge'),
    ...config.first,
    usage,
    side,
    limits,
    edge,
    ...config.last,
  ];
  return serve(ctx, components, o.drainDelay, () => {
    logger.info({ url: edge.url, authz: o.authz, metricsPort: side.port }, 'edge ready');
  });
});
