/**
 * The one wiring of usage sinks. With NATS: spans are published (spooled while NATS is away), and
 * with PostgreSQL too an aggregator runs in process, so `voicegate usage` shows roll-ups at once.
 * Without NATS: spans go to `<spoolDir>/spans.jsonl` (rotated by size) plus one log line per
 * request. The NATS spool in the same folder is `spool.jsonl`, a different file, so spans written
 * in file mode are never replayed to NATS as if they had been spooled.
 */
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import type { Logger } from 'pino';
import type { ExchangeObserverFactory } from '../core/exchange/exchange-observer.ts';
import type { UsageMetrics } from '../core/usage/metrics.ts';
import type { SpanSink } from '../core/usage/span-sink.ts';
import { createUsageObserverFactory } from '../core/usage/usage-observer.ts';
import { FileSpanSink } from '../adapters/files/file-sink.ts';
import { NatsSpanSink } from '../adapters/nats/nats-sink.ts';
import type { RunningConsumer } from '../adapters/nats/span-consumer.ts';
import { startAggregator } from './components/aggregator.ts';

/** Between attempts to start the in-process aggregator while NATS or PostgreSQL is away. */
const AGGREGATOR_RETRY_MS = 2_000;
/** A database that never answers fails the attempt instead of stalling it. */
export const DATABASE_CONNECT_TIMEOUT_MS = 10_000;

export interface UsagePipelineOptions {
  readonly natsUrl?: string;
  readonly databaseUrl?: string;
  /** Folder for the NATS spool, or for `spans.jsonl` without NATS. */
  readonly spoolDir: string;
  readonly logger: Logger;
  /** JetStream stream name (default `VOICEGATE_SPANS`); lets tests and side-by-side runs share a NATS. */
  readonly stream?: string;
  /** Subject prefix spans are published under (default `voicegate.spans`). */
  readonly subjectPrefix?: string;
  /** Durable name of the in-process aggregator's consumer (default `voicegate-aggregator`). */
  readonly durable?: string;
  /** The `voicegate_usage_*` families, on the registry the process serves. */
  readonly metrics?: UsageMetrics;
  /** Cap of the NATS spool file (default 256 MiB); past it the newest spans are dropped and counted. */
  readonly spoolMaxBytes?: number;
  /** Size at which `spans.jsonl` is rotated (default 64 MiB) and how many rotated files stay (default 5). */
  readonly spanFileMaxBytes?: number;
  readonly spanFileKeep?: number;
}

export interface UsagePipeline {
  readonly observe: ExchangeObserverFactory;
  readonly sink: SpanSink;
  close(): Promise<void>;
}

export async function createUsagePipeline(opts: UsagePipelineOptions): Promise<UsagePipeline> {
  const log = opts.logger;
  const observerFor = (sink: SpanSink) =>
    createUsageObserverFactory({ sink, onError: (err) => log.error({ err }, 'usage span failed') });
  if (!opts.natsUrl) {
    const sink = new FileSpanSink(join(opts.spoolDir, 'spans.jsonl'), log, {
      ...(opts.spanFileMaxBytes !== undefined ? { maxBytes: opts.spanFileMaxBytes } : {}),
      ...(opts.spanFileKeep !== undefined ? { keep: opts.spanFileKeep } : {}),
    });
    log.info({ path: sink.path }, 'NATS_URL not set: usage spans go to a local file');
    return { sink, observe: observerFor(sink), close: () => sink.close() };
  }
  const streamOpts = {
    ...(opts.stream ? { name: opts.stream } : {}),
    ...(opts.subjectPrefix ? { subjectPrefix: opts.subjectPrefix } : {}),
  };
  const metrics = opts.metrics ? { metrics: opts.metrics } : {};
  const sink = await NatsSpanSink.start({
    servers: opts.natsUrl,
    spoolDir: opts.spoolDir,
    logger: log,
    ...streamOpts,
    ...metrics,
    ...(opts.spoolMaxBytes !== undefined ? { spoolMaxBytes: opts.spoolMaxBytes } : {}),
  });
  let stopped = false;
  let nc: NatsConnection | undefined;
  let pool: pg.Pool | undefined;
  let running: RunningConsumer | undefined;
  // In the background: `start` serves traffic (spooling spans) while the database comes up.
  const aggregatorReady = opts.databaseUrl
    ? (async () => {
        const databaseUrl = opts.databaseUrl!;
        while (!stopped) {
          try {
            nc = await connect({ servers: opts.natsUrl, name: 'voicegate-aggregator', maxReconnectAttempts: -1 });
            pool = new pg.Pool({ connectionString: databaseUrl, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS });
            // An idle client losing its server (PostgreSQL restarted) emits here; unheard, it ends the process.
            pool.on('error', (err) => log.warn({ err: err.message }, 'PostgreSQL connection lost; the pool reconnects on next use'));
            if (stopped) break;
            running = await startAggregator({ nc, pool, logger: log, ...streamOpts, ...metrics, ...(opts.durable ? { durable: opts.durable } : {}) });
            log.info('in-process usage aggregator running');
            return;
          } catch (err) {
            log.warn({ err: err instanceof Error ? err.message : String(err) }, 'usage aggregator not started; retrying');
            await nc?.close().catch(() => undefined);
            await pool?.end().catch(() => undefined);
            nc = undefined;
            pool = undefined;
            await new Promise((r) => setTimeout(r, AGGREGATOR_RETRY_MS));
          }
        }
      })()
    : Promise.resolve();
  return {
    sink,
    observe: observerFor(sink),
    async close() {
      stopped = true;
      await sink.close();
      await Promise.race([aggregatorReady, new Promise((r) => setTimeout(r, 100))]);
      await running?.stop();
      await nc?.drain().catch(() => undefined);
      await pool?.end().catch(() => undefined);
    },
  };
}
