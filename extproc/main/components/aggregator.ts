/**
 * The aggregator: a durable consumer writing each batch of spans into PostgreSQL in one
 * transaction and acknowledging only after the commit. A crash between commit and ack leads to
 * redelivery, which the span-id primary key turns into a no-op.
 */
import type { NatsConnection } from 'nats';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { NO_USAGE_METRICS, type UsageMetrics } from '../../core/usage/metrics.ts';
import { migrate } from '../../adapters/postgres/migrations.ts';
import { writeSpans } from '../../adapters/postgres/rollup-writer.ts';
import { startSpanConsumer, type RunningConsumer } from '../../adapters/nats/span-consumer.ts';
import { DEFAULT_STREAM, ensureSpanStream, type SpanStreamOptions } from '../../adapters/nats/span-stream.ts';
import type { UsageSpan } from '../../core/usage/span.ts';

export const DEFAULT_AGGREGATOR_DURABLE = 'voicegate-aggregator';

export interface AggregatorOptions extends SpanStreamOptions {
  readonly nc: NatsConnection;
  readonly pool: Pool;
  readonly logger: Logger;
  readonly durable?: string;
  readonly batchSize?: number;
  readonly ackWaitMs?: number;
  readonly fetchExpiresMs?: number;
  readonly metrics?: UsageMetrics;
  /**
   * Runs after a batch committed and before it is acknowledged. Only tests use it, to model a
   * crash in that window.
   */
  readonly afterCommit?: (spans: readonly UsageSpan[]) => Promise<void>;
}

/** Migrates the schema, ensures the stream, and starts consuming. */
export async function startAggregator(opts: AggregatorOptions): Promise<RunningConsumer> {
  await migrate(opts.pool);
  const stream = await ensureSpanStream(await opts.nc.jetstreamManager(), opts);
  const metrics = opts.metrics ?? NO_USAGE_METRICS;
  return startSpanConsumer({
    nc: opts.nc,
    stream: stream ?? DEFAULT_STREAM,
    durable: opts.durable ?? DEFAULT_AGGREGATOR_DURABLE,
    logger: opts.logger,
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    ...(opts.ackWaitMs !== undefined ? { ackWaitMs: opts.ackWaitMs } : {}),
    ...(opts.fetchExpiresMs !== undefined ? { fetchExpiresMs: opts.fetchExpiresMs } : {}),
    onLag: (pending) => metrics.consumerLag.set(pending),
    handle: async (spans) => {
      const { inserted } = await writeSpans(opts.pool, spans);
      metrics.aggregated.inc(inserted);
      metrics.duplicates.inc(spans.length - inserted);
      await opts.afterCommit?.(spans);
    },
  });
}
