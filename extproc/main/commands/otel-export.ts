/** `voicegate otel-export`: spans from NATS to an OTLP/HTTP receiver, until stopped. */
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { tracesUrl } from '../../adapters/otel/span-exporter.ts';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { defineCommand, serve } from '../command.ts';
import { natsComponent } from '../components/connections.ts';
import { consumerComponent } from '../components/consumers.ts';
import { dependencyHealth, watchNats } from '../components/health.ts';
import { sidePortComponent } from '../components/listeners.ts';
import { startOtelExport } from '../components/otel-export.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { OTEL_EXPORT_OPTIONS } from '../options.ts';

export const otelExportCommand = defineCommand('consume usage spans from NATS and export them over OTLP', OTEL_EXPORT_OPTIONS, async (o, ctx) => {
  const logger = pino({ name: 'voicegate-otel-export', level: ctx.env['LOG_LEVEL'] ?? 'info' }, pino.destination(2));
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const endpoint = tracesUrl(o.endpoint);
  const nats = natsComponent(o.nats, 'voicegate-otel-export');
  const health = dependencyHealth(registry, ['nats'], logger);
  const watch = { name: 'NATS watch', start: async () => watchNats(nats.connection, health), drain() {}, close: async () => {} };
  const exporter = consumerComponent('otel export', () =>
    startOtelExport({ nc: nats.connection, endpoint, logger, name: o.stream, subjectPrefix: o.subjectPrefix, durable: o.durable, metrics: usageMetrics(registry) }),
  );
  const side = o.httpPort === undefined ? [] : [sidePortComponent({ port: o.httpPort, registry, ready: () => health.ready() })];
  return serve(ctx, [telemetryComponent('voicegate-otel-export'), nats, watch, ...side, exporter], o.drainDelay, () => {
    logger.info({ endpoint }, 'otel export running');
  });
});
