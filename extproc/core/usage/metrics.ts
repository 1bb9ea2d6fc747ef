/**
 * The usage pipeline's counters and gauges as a port: the NATS publisher, the aggregator and the
 * OTLP exporter count through it; the Prometheus adapter implements it on the registry a process
 * serves on `/metrics`. Unwired, nothing is counted.
 */
export interface Counting {
  inc(by?: number): void;
}
export interface Gauging {
  set(value: number): void;
}

export interface UsageMetrics {
  readonly published: Counting;
  readonly publishFailures: Counting;
  readonly spooled: Counting;
  readonly spoolBytes: Gauging;
  readonly spoolSpans: Gauging;
  /** Spans lost because the disk spool was at its size cap (refused newest-first). */
  readonly spoolDropped: Counting;
  readonly queueDepth: Gauging;
  /** Spans published again from the spool (after an outage, or left by an earlier run). */
  readonly replayed: Counting;
  /** Group commits of the spool (one fdatasync each) and the spans they made durable. */
  readonly spoolSyncs: Counting;
  readonly spoolSyncedSpans: Counting;
  readonly aggregated: Counting;
  readonly duplicates: Counting;
  readonly otelExported: Counting;
  /** Spans in the stream a consumer (aggregator, OTLP export) has not received yet. */
  readonly consumerLag: Gauging;
}

const none = { inc() {}, set() {} };

/** Counts nothing; the default where no registry is wired. */
export const NO_USAGE_METRICS: UsageMetrics = Object.freeze({
  published: none,
  publishFailures: none,
  spooled: none,
  spoolBytes: none,
  spoolSpans: none,
  spoolDropped: none,
  queueDepth: none,
  replayed: none,
  spoolSyncs: none,
  spoolSyncedSpans: none,
  aggregated: none,
  duplicates: none,
  otelExported: none,
  consumerLag: none,
});
