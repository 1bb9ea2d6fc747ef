/** Prometheus metrics of the usage pipeline, registered once per registry. */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { UsageMetrics } from '../../core/usage/metrics.ts';

const byRegistry = new WeakMap<Registry, UsageMetrics>();

/** The pipeline's metrics on `registry`, created once per registry. */
export function usageMetrics(registry: Registry): UsageMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const m: UsageMetrics = {
    published: new Counter({ name: 'voicegate_usage_spans_published_total', help: 'Spans acknowledged by NATS JetStream.', registers }),
    publishFailures: new Counter({ name: 'voicegate_usage_publish_failures_total', help: 'Span publishes that failed or timed out (the span went to the spool).', registers }),
    spooled: new Counter({ name: 'voicegate_usage_spans_spooled_total', help: 'Spans written to the disk spool while NATS was unavailable.', registers }),
    spoolBytes: new Gauge({ name: 'voicegate_usage_spool_bytes', help: 'Bytes in the disk spool waiting for a replay to NATS; above 0 means NATS is or was unreachable.', registers }),
    spoolSpans: new Gauge({ name: 'voicegate_usage_spool_spans', help: 'Spans in the disk spool waiting for a replay to NATS.', registers }),
    spoolDropped: new Counter({ name: 'voicegate_usage_spool_dropped_total', help: 'Spans lost because the disk spool was full (--spool-max-bytes); the newest are refused.', registers }),
    queueDepth: new Gauge({ name: 'voicegate_usage_publish_queue', help: 'Spans awaiting a NATS acknowledgement (also in the spool file, so a crash loses none).', registers }),
    replayed: new Counter({ name: 'voicegate_usage_spans_replayed_total', help: 'Spans published from the disk spool after NATS was away or the process restarted.', registers }),
    spoolSyncs: new Counter({ name: 'voicegate_usage_spool_fdatasync_total', help: 'Group commits (fdatasync) of the span spool; spans per commit = synced spans / this.', registers }),
    spoolSyncedSpans: new Counter({ name: 'voicegate_usage_spool_synced_spans_total', help: 'Spans made durable by the spool\'s group commits.', registers }),
    aggregated: new Counter({ name: 'voicegate_usage_spans_aggregated_total', help: 'Spans written to PostgreSQL for the first time.', registers }),
    duplicates: new Counter({ name: 'voicegate_usage_spans_duplicate_total', help: 'Redelivered spans already in PostgreSQL (not counted again).', registers }),
    otelExported: new Counter({ name: 'voicegate_usage_otel_exported_total', help: 'Spans exported over OTLP.', registers }),
    consumerLag: new Gauge({ name: 'voicegate_usage_consumer_lag_spans', help: 'Spans in the stream this consumer has not received yet (JetStream pending count at the last fetch).', registers }),
  };
  byRegistry.set(registry, m);
  return m;
}
