/**
 * CLI commands of the usage pipeline and the factory `npm start` wires in.
 *   voicegate aggregator  [--nats URL] [--database URL] [--stream NAME] [--subject-prefix P] [--durable NAME] [--batch N] [--ack-wait MS]
 *   voicegate otel-export [--nats URL] [--endpoint URL] [--stream NAME] [--subject-prefix P] [--durable NAME]
 *   voicegate usage [--by user|team|model|account] [--since ISO|7d] [--json] [--database URL]
 * Defaults come from NATS_URL, DATABASE_URL and OTEL_EXPORTER_OTLP_ENDPOINT.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { waitForShutdown } from '../signals.ts';
import type { ExchangeObserverFactory } from '../../core/exchange/exchange-observer.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';
import { startAggregator } from '../components/aggregator.ts';
import { createUsageObserverFactory } from '../../core/usage/usage-observer.ts';
import { FileSpanSink } from '../../adapters/files/file-sink.ts';
import { NatsSpanSink } from '../../adapters/nats/nats-sink.ts';
import { tracesUrl } from '../../adapters/otel/span-exporter.ts';
import { startOtelExport } from '../components/otel-export.ts';
import type { RunningConsumer } from '../../adapters/nats/span-consumer.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import { formatUsageTable, parseSince, queryUsage, USAGE_DIMENSIONS, type UsageDimension } from '../../adapters/postgres/usage-query.ts';

const stderrLogger = () => pino({ name: 'voicegate' }, pino.destination(2));

/**
 * The span stream, subject prefix and aggregator durable named by `VOICEGATE_STREAM`,
 * `VOICEGATE_SUBJECT_PREFIX` and `VOICEGATE_DURABLE` (unset or empty: the defaults), so separate
 * runs sharing one NATS each get their own. `voicegate start` and the consumer commands both read
 * them here, so they agree.
 */
export function spanStreamFromEnv(): { stream?: string; subjectPrefix?: string; durable?: string } {
  const stream = process.env['VOICEGATE_STREAM'];
  const subjectPrefix = process.env['VOICEGATE_SUBJECT_PREFIX'];
  const durable = process.env['VOICEGATE_DURABLE'];
  return { ...(stream ? { stream } : {}), ...(subjectPrefix ? { subjectPrefix } : {}), ...(durable ? { durable } : {}) };
}

/** `--stream` / `--subject-prefix` fall back to the env vars `voicegate start` reads. */
function streamSettings(values: { stream?: string | undefined; 'subject-prefix'?: string | undefined }): { name?: string; subjectPrefix?: string } {
  const env = spanStreamFromEnv();
  const name = values.stream ?? env.stream;
  const subjectPrefix = values['subject-prefix'] ?? env.subjectPrefix;
  return { ...(name ? { name } : {}), ...(subjectPrefix ? { subjectPrefix } : {}) };
}

const streamFlags = {
  nats: { type: 'string' },
  stream: { type: 'string' },
  'subject-prefix': { type: 'string' },
  durable: { type: 'string' },
} as const;

/** `voicegate aggregator`: consume spans into PostgreSQL until SIGINT/SIGTERM. */
export async function aggregatorCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { ...streamFlags, database: { type: 'string' }, batch: { type: 'string' }, 'ack-wait': { type: 'string' } } });
  const natsUrl = values.nats ?? process.env.NATS_URL;
  const databaseUrl = values.database ?? process.env.DATABASE_URL;
  const log = stderrLogger();
  if (!natsUrl || !databaseUrl) {
    log.error('aggregator needs --nats (or NATS_URL) and --database (or DATABASE_URL)');
    return 2;
  }
  const positive = (v: string | undefined) => v === undefined || (Number.isSafeInteger(Number(v)) && Number(v) > 0);
  if (!positive(values.batch) || !positive(values['ack-wait'])) {
    log.error('--batch and --ack-wait must be positive integers');
    return 2;
  }
  const durable = values.durable ?? spanStreamFromEnv().durable;
  const nc = await connect({ servers: natsUrl, name: 'voicegate-aggregator', maxReconnectAttempts: -1 });
  const pool = new pg.Pool({ connectionString: databaseUrl });
  const running = await startAggregator({
    nc,
    pool,
    logger: log,
    ...streamSettings(values),
    ...(durable ? { durable } : {}),
    ...(values.batch ? { batchSize: Number(values.batch) } : {}),
    ...(values['ack-wait'] ? { ackWaitMs: Number(values['ack-wait']) } : {}),
  });
  log.info({ nats: natsUrl }, 'aggregator running');
  const code = await Promise.race([waitForShutdown().then(() => 0), running.done.then(() => 0, () => 1)]);
  await running.stop();
  await nc.drain();
  await pool.end();
  return code;
}

/** `voicegate otel-export`: consume spans and export them over OTLP/HTTP until SIGINT/SIGTERM. */
export async function otelExportCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { ...streamFlags, endpoint: { type: 'string' } } });
  const natsUrl = values.nats ?? process.env.NATS_URL;
  const endpoint = values.endpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const log = stderrLogger();
  if (!natsUrl || !endpoint) {
    log.error('otel-export needs --nats (or NATS_URL) and --endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)');
    return 2;
  }
  const nc = await connect({ servers: natsUrl, name: 'voicegate-otel-export', maxReconnectAttempts: -1 });
  const running = await startOtelExport({
    nc,
    endpoint: tracesUrl(endpoint),
    logger: log,
    ...streamSettings(values),
    ...(values.durable ? { durable: values.durable } : {}),
  });
  log.info({ endpoint: tracesUrl(endpoint) }, 'otel export running');
  const code = await Promise.race([waitForShutdown().then(() => 0), running.done.then(() => 0, () => 1)]);
  await running.stop();
  await nc.drain();
  return code;
}

/** `voicegate usage`: prints roll-ups as a table (or JSON with --json). */
export async function usageCommand(args: string[], out: (text: string) => void = (t) => process.stdout.write(`${t}\n`)): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { by: { type: 'string', default: 'user' }, since: { type: 'string', default: '30d' }, json: { type: 'boolean', default: false }, database: { type: 'string' } },
  });
  const databaseUrl = values.database ?? process.env.DATABASE_URL;
  if (!databaseUrl) {
    process.stderr.write('voicegate usage: set DATABASE_URL or pass --database\n');
    return 2;
  }
  if (!(USAGE_DIMENSIONS as readonly string[]).includes(values.by)) {
    process.stderr.write(`voicegate usage: --by must be one of ${USAGE_DIMENSIONS.join(', ')}\n`);
    return 2;
  }
  let since: string;
  try {
    since = parseSince(values.since);
  } catch (err) {
    process.stderr.write(`voicegate usage: ${(err as Error).message}\n`);
    return 2;
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    const rows = await queryUsage(pool, values.by as UsageDimension, since);
    out(values.json ? JSON.stringify({ by: values.by, since, rows }, null, 2) : formatUsageTable(values.by as UsageDimension, rows));
    return 0;
  } catch (err) {
    process.stderr.write(`voicegate usage: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}

export interface UsagePipelineOptions {
  readonly natsUrl?: string;
  readonly databaseUrl?: string;
  /** Folder for the NATS spool, or for `spans.jsonl` without NATS. */
  readonly spoolDir: string;
  readonly logger: Logger;
  readonly snapshot: () => Snapshot | undefined;
  /** JetStream stream name (default `VOICEGATE_SPANS`); lets tests and side-by-side runs share a NATS. */
  readonly stream?: string;
  /** Subject prefix spans are published under (default `voicegate.spans`). */
  readonly subjectPrefix?: string;
  /** Durable name of the in-process aggregator's consumer (default `voicegate-aggregator`). */
  readonly durable?: string;
}

export interface UsagePipeline {
  readonly observe: ExchangeObserverFactory;
  readonly sink: SpanSink;
  close(): Promise<void>;
}

/**
 * What `npm start` runs. With NATS: spans are published (spooled while NATS is away), and with
 * PostgreSQL too an aggregator runs in process, so `voicegate usage` shows roll-ups at once.
 * Without NATS: spans go to `<spoolDir>/spans.jsonl` plus one log line per request.
 */
export async function createUsagePipeline(opts: UsagePipelineOptions): Promise<UsagePipeline> {
  const log = opts.logger;
  const observerFor = (sink: SpanSink) =>
    createUsageObserverFactory({ sink, snapshot: opts.snapshot, onError: (err) => log.error({ err }, 'usage span failed') });
  if (!opts.natsUrl) {
    const sink = new FileSpanSink(join(opts.spoolDir, 'spans.jsonl'), log);
    log.info({ path: sink.path }, 'NATS_URL not set: usage spans go to a local file');
    return { sink, observe: observerFor(sink), close: () => sink.close() };
  }
  const streamOpts = {
    ...(opts.stream ? { name: opts.stream } : {}),
    ...(opts.subjectPrefix ? { subjectPrefix: opts.subjectPrefix } : {}),
  };
  const sink = await NatsSpanSink.start({ servers: opts.natsUrl, spoolDir: opts.spoolDir, logger: log, ...streamOpts });
  let stopped = false;
  let nc: NatsConnection | undefined;
  let pool: pg.Pool | undefined;
  let running: RunningConsumer | undefined;
  const aggregatorReady = opts.databaseUrl
    ? (async () => {
        const databaseUrl = opts.databaseUrl!;
        while (!stopped) {
          try {
            nc = await connect({ servers: opts.natsUrl, name: 'voicegate-aggregator', maxReconnectAttempts: -1 });
            pool = new pg.Pool({ connectionString: databaseUrl });
            if (stopped) break;
            running = await startAggregator({ nc, pool, logger: log, ...streamOpts, ...(opts.durable ? { durable: opts.durable } : {}) });
            log.info('in-process usage aggregator running');
            return;
          } catch (err) {
            log.warn({ err: err instanceof Error ? err.message : String(err) }, 'usage aggregator not started; retrying');
            await nc?.close().catch(() => undefined);
            await pool?.end().catch(() => undefined);
            nc = undefined;
            pool = undefined;
            await new Promise((r) => setTimeout(r, 2000));
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
