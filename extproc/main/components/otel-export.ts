/**
 * The OTel export consumer: a durable consumer of the span stream (beside the aggregator's) that
 * exports each batch over OTLP/HTTP and acknowledges only once the receiver accepted it.
 */
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { startSpanConsumer, type RunningConsumer } from '../../adapters/nats/span-consumer.ts';
import { ensureSpanStream, type SpanStreamOptions } from '../../adapters/nats/span-stream.ts';
import { exportSpans } from '../../adapters/otel/span-exporter.ts';
import { NO_USAGE_METRICS, type UsageMetrics } from '../../core/usage/metrics.ts';

export const DEFAULT_OTEL_DURABLE = 'voicegate-otel-export';

export interface OtelExportOptions extends SpanStreamOptions {
  readonly nc: NatsConnection;
  /** OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`. */
  readonly endpoint: string;
  readonly logger: Logger;
  readonly durable?: string;
  readonly batchSize?: number;
  readonly ackWaitMs?: number;
  readonly fetchExpiresMs?: number;
  readonly metrics?: UsageMetrics;
}

/** Starts the OTel export consumer (a second durable consumer beside the aggregator). */
export async function startOtelExport(opts: OtelExportOptions): Promise<RunningConsumer> {
  const stream = await ensureSpanStream(await opts.nc.jetstreamManager(), opts);
  const exporter = new OTLPTraceExporter({ url: opts.endpoint });
  const metrics = opts.metrics ?? NO_USAGE_METRICS;
  const running = await startSpanConsumer({
    nc: opts.nc,
    stream,
    durable: opts.durable ?? DEFAULT_OTEL_DURABLE,
    logger: opts.logger,
    batchSize: opts.batchSize ?? 256,
    ...(opts.ackWaitMs !== undefined ? { ackWaitMs: opts.ackWaitMs } : {}),
    ...(opts.fetchExpiresMs !== undefined ? { fetchExpiresMs: opts.fetchExpiresMs } : {}),
    onLag: (pending) => metrics.consumerLag.set(pending),
    handle: async (spans) => {
      await exportSpans(exporter, spans);
      metrics.otelExported.inc(spans.length);
    },
  });
  return {
    done: running.done,
    async stop() {
      await running.stop();
      await exporter.shutdown();
    },
  };
}

