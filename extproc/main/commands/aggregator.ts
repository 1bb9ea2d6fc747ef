/** `voicegate aggregator`: spans from NATS into PostgreSQL roll-ups, until stopped. */
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { defineCommand, serve } from '../command.ts';
import { startAggregator } from '../components/aggregator.ts';
import { natsComponent, poolComponent } from '../components/connections.ts';
import { consumerComponent } from '../components/consumers.ts';
import { dependencyHealth, postgresProbe, watchNats } from '../components/health.ts';
import { sidePortComponent } from '../components/listeners.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { AGGREGATOR_OPTIONS } from '../options.ts';

export const aggregatorCommand = defineCommand('consume usage spans from NATS into PostgreSQL roll-ups', AGGREGATOR_OPTIONS, async (o, ctx) => {
  const logger = pino({ name: 'voicegate-aggregator', level: ctx.env['LOG_LEVEL'] ?? 'info' }, pino.destination(2));
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const nats = natsComponent(o.nats, 'voicegate-aggregator');
  const db = poolComponent(o.database);
  const health = dependencyHealth(registry, ['nats', 'postgres'], logger);
  const watch = { name: 'NATS watch', start: async () => watchNats(nats.connection, health), drain() {}, close: async () => {} };
  const aggregator = consumerComponent('aggregator', () =>
    startAggregator({
      nc: nats.connection,
      pool: db.pool,
      logger,
      name: o.stream,
      subjectPrefix: o.subjectPrefix,
      durable: o.durable,
      metrics: usageMetrics(registry),
      ...(o.batch ? { batchSize: o.batch } : {}),
      ...(o.ackWait ? { ackWaitMs: o.ackWait } : {}),
    }),
  );
  const side = o.httpPort === undefined ? [] : [sidePortComponent({ port: o.httpPort, registry, ready: () => health.ready() })];
  return serve(ctx, [telemetryComponent('voicegate-aggregator'), nats, watch, db, postgresProbe(db.pool, health), ...side, aggregator], o.drainDelay, () => {
    logger.info({ stream: o.stream, durable: o.durable }, 'aggregator running');
  });
});
