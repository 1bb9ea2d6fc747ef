/**
 * SpanSink that publishes to NATS JetStream with acknowledgement, `Nats-Msg-Id` = span id, and
 * writes every span to the disk spool first (a write-ahead log), so no span depends on memory.
 *
 * Durability: `publish()` writes the span's line to `spool.jsonl` with one write(2) before it
 * returns (it survives a kill of the process from then on) and the spool fdatasyncs in batches
 * every few milliseconds (power loss); the publish to JetStream starts at the same time. An
 * acknowledged span moves the spool's offset; a span that is never acknowledged — NATS gone, the
 * process killed — is still in the file and is published again by the replay, of this run or of
 * the next start. What is replayed twice is dropped by JetStream (`Nats-Msg-Id` within the stream's
 * duplicate window) and by the aggregator (span-id primary key) beyond it.
 *
 * Order: in `direct` mode spans go from a bounded in-memory queue to JetStream, a window of
 * publishes in flight, and their acknowledgements advance the offset over the longest prefix that
 * is acknowledged. When a publish fails or the queue is full the sink switches to `spool` mode: the
 * spans stay only on disk and a replay loop publishes the file from the offset once NATS answers
 * again; only when it has caught up does the sink go back to `direct`. A span that was in flight
 * during the switch may land slightly out of order, or twice; spans are independent, so only the
 * de-duplication matters, and that is by span id.
 *
 * Loss: the spool has a size cap (`spoolMaxBytes`); past it, while NATS is away, the newest spans
 * are refused, counted in `voicegate_usage_spool_dropped_total` and logged as errors, never dropped
 * without a trace. While NATS acknowledges, a span the spool cannot take is still published.
 */
import { connect, type JetStreamClient, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { NO_USAGE_METRICS, type UsageMetrics } from '../../core/usage/metrics.ts';
import { encodeSpan, decodeSpan, type UsageSpan } from '../../core/usage/span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';
import { DEFAULT_SUBJECT_PREFIX, ensureSpanStream, spanSubject, type SpanStreamOptions } from './span-stream.ts';
import { Spool } from './spool.ts';

export interface NatsSpanSinkOptions extends SpanStreamOptions {
  readonly servers: string | string[];
  readonly spoolDir: string;
  readonly logger: Logger;
  /** Spans held in memory before new ones go to the spool only (default 10,000). */
  readonly maxQueue?: number;
  /** Publishes in flight at once (default 128). */
  readonly window?: number;
  /** How long to wait for a JetStream acknowledgement (default 2 s). */
  readonly publishTimeoutMs?: number;
  /** Replay attempt interval while spooling (default 500 ms). */
  readonly retryMs?: number;
  /** Largest spool file; once full, newer spans are refused, counted and logged (default 256 MiB). */
  readonly spoolMaxBytes?: number;
  /** Group commit of the spool: longest wait for fdatasync (default 5 ms) and the batch that starts one at once (default 256). */
  readonly syncIntervalMs?: number;
  readonly syncBatch?: number;
  readonly metrics?: UsageMetrics;
}

export type SinkMode = 'direct' | 'spool';

export interface NatsSinkStats {
  readonly mode: SinkMode;
  readonly connected: boolean;
  readonly queued: number;
  readonly inFlight: number;
  /** Spans that only the replay will publish (on disk, not in memory). */
  readonly spoolSpans: number;
  readonly spoolBytes: number;
}

/** A span written in direct mode: where its line ends in the spool (none if the spool refused it). */
interface Entry {
  readonly span: UsageSpan;
  readonly end: number | undefined;
  acked: boolean;
}

export class NatsSpanSink implements SpanSink {
  readonly #opts: NatsSpanSinkOptions;
  readonly #spool: Spool;
  readonly #metrics: UsageMetrics;
  readonly #log: Logger;
  readonly #prefix: string;
  #nc: NatsConnection | undefined;
  #js: JetStreamClient | undefined;
  // Starts in spool mode: nothing goes direct until the stream is known to exist.
  #mode: SinkMode = 'spool';
  // Direct-mode spans in the order they were written, until their prefix is acknowledged.
  #written: Entry[] = [];
  #writtenHead = 0;
  #queue: Entry[] = [];
  #inFlight = 0;
  #draining: Promise<void> | undefined;
  #replaying: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #connecting: Promise<void>;
  #nextWarnAt = 1;
  // Spans refused by a full spool and not yet reported in a log line.
  #droppedUnlogged = 0;
  #dropLoggedAt = 0;
  #writeErrorLoggedAt = 0;

  private constructor(opts: NatsSpanSinkOptions, spool: Spool) {
    this.#opts = opts;
    this.#spool = spool;
    this.#metrics = opts.metrics ?? NO_USAGE_METRICS;
    this.#log = opts.logger.child({ component: 'usage-publisher' });
    this.#prefix = opts.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX;
    this.#updateGauges();
    // A spool left by an earlier run is counted in the background; the gauges catch up after.
    void spool.counted.then(() => this.#updateGauges());
    this.#connecting = this.#connectLoop();
    this.#timer = setInterval(() => this.#kickReplay(), opts.retryMs ?? 500);
    this.#timer.unref();
  }

  /**
   * Opens the spool and starts connecting in the background: the sink accepts spans at once, even
   * when NATS is down at start (they are spooled until it answers).
   */
  static async start(opts: NatsSpanSinkOptions): Promise<NatsSpanSink> {
    const metrics = opts.metrics ?? NO_USAGE_METRICS;
    const spool = await Spool.open(opts.spoolDir, {
      ...(opts.spoolMaxBytes !== undefined ? { maxBytes: opts.spoolMaxBytes } : {}),
      ...(opts.syncIntervalMs !== undefined ? { syncIntervalMs: opts.syncIntervalMs } : {}),
      ...(opts.syncBatch !== undefined ? { syncBatch: opts.syncBatch } : {}),
      onSync: (lines) => {
        metrics.spoolSyncs.inc();
        metrics.spoolSyncedSpans.inc(lines);
      },
    });
    return new NatsSpanSink(opts, spool);
  }

  /** Resolves once connected, the stream exists and a left-over spool has been replayed. */
  ready(): Promise<void> {
    return this.#connecting;
  }

  stats(): NatsSinkStats {
    const direct = this.#mode === 'direct';
    return {
      mode: this.#mode,
      connected: this.#js !== undefined && !this.#nc?.isClosed(),
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      // In direct mode everything in the file is also in memory, on its way to NATS.
      spoolSpans: direct ? 0 : this.#spool.spans,
      spoolBytes: direct ? 0 : this.#spool.bytes,
    };
  }

  publish(span: UsageSpan): void {
    if (this.#closed) {
      this.#log.error({ spanId: span.spanId }, 'span published after close; dropped');
      return;
    }
    const end = this.#write(span);
    if (this.#mode === 'direct' && this.#queue.length + this.#inFlight >= (this.#opts.maxQueue ?? 10_000)) {
      this.#log.warn('usage publish queue full; spans wait in the disk spool');
      this.#enterSpool();
    }
    if (this.#mode === 'spool') {
      if (end !== undefined) this.#metrics.spooled.inc();
      else this.#dropped(1);
      this.#updateGauges();
      return;
    }
    const entry: Entry = { span, end, acked: false };
    this.#written.push(entry);
    this.#queue.push(entry);
    this.#metrics.queueDepth.set(this.#queue.length + this.#inFlight);
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  /** The span's line, in the kernel before this returns; undefined when the spool refused or failed. */
  #write(span: UsageSpan): number | undefined {
    try {
      return this.#spool.write([JSON.stringify(span)]).ends[0];
    } catch (err) {
      const now = Date.now();
      if (now - this.#writeErrorLoggedAt >= DROP_LOG_INTERVAL_MS) {
        this.#writeErrorLoggedAt = now;
        this.#log.error({ err: errText(err), path: this.#spool.path }, 'usage spool write failed; spans depend on NATS acknowledging them');
      }
      return undefined;
    }
  }

  /**
   * Resolves when every span handed over so far is acknowledged by NATS or fdatasync'ed in the
   * spool: publishes in flight settle first (acknowledged, or failed and so waiting on disk).
   */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
    await this.#spool.synced();
  }

  /** Resolves when the spool has been fully replayed and nothing is queued (tests). */
  async drained(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.flush();
      if (this.#mode === 'direct' && this.#spool.empty && this.#queue.length === 0 && this.#inFlight === 0) return;
      if (Date.now() > deadline) throw new Error(`spool not drained: ${JSON.stringify(this.stats())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#replaying) await this.#replaying;
    await this.flush();
    // Stops a connect loop that never succeeded; an open connection is drained.
    const nc = this.#nc;
    this.#nc = undefined;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
    await this.#spool.close();
    this.#reportUnloggedDrops();
  }

  async #connectLoop(): Promise<void> {
    const retryMs = this.#opts.retryMs ?? 500;
    while (!this.#closed) {
      let nc: NatsConnection | undefined;
      try {
        nc = await connect({
          servers: this.#opts.servers,
          name: 'voicegate-usage-publisher',
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: Math.min(retryMs, 1000),
        });
        if (this.#closed) {
          await nc.close();
          return;
        }
        this.#nc = nc;
        await ensureSpanStream(await nc.jetstreamManager(), this.#opts);
        this.#js = nc.jetstream();
        this.#log.info({ servers: this.#opts.servers, stream: this.#opts.name }, 'usage publisher connected to NATS');
        void this.#watchStatus(nc);
        this.#kickReplay();
        await this.#replaying; // so that ready() means "publishing directly" when NATS is healthy
        return;
      } catch (err) {
        this.#log.warn({ err: errText(err) }, 'NATS not available for usage spans; spooling to disk');
        if (nc && !nc.isClosed()) await nc.close().catch(() => undefined);
        this.#nc = undefined;
        await new Promise((r) => setTimeout(r, retryMs));
      }
    }
  }

  async #watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect') this.#kickReplay();
      else if (s.type === 'disconnect') this.#log.warn('usage publisher lost NATS; unacknowledged spans wait in the spool');
    }
  }

  /**
   * From direct to spool mode: the queued spans are already on disk, so they leave memory and the
   * replay publishes them from the file. One the spool could not take is written again now, or
   * counted as dropped.
   */
  #enterSpool(): void {
    if (this.#mode === 'spool') return;
    this.#mode = 'spool';
    const queued = this.#queue.splice(0);
    let spooled = 0;
    for (const e of queued) {
      if (e.end !== undefined) spooled++;
      else if (this.#write(e.span) !== undefined) spooled++;
      else this.#dropped(1);
    }
    this.#metrics.spooled.inc(spooled);
    this.#updateGauges();
  }

  /**
   * Moves the spool's offset over the longest acknowledged prefix of what direct mode wrote, then
   * lets the spool give back acknowledged bytes.
   */
  #advance(): void {
    let end: number | undefined;
    let spans = 0;
    const written = this.#written;
    while (this.#writtenHead < written.length && written[this.#writtenHead]!.acked) {
      const e = written[this.#writtenHead++]!;
      if (e.end !== undefined) {
        end = e.end;
        spans++;
      }
    }
    if (this.#writtenHead > 1024 && this.#writtenHead * 2 > written.length) {
      this.#written = written.slice(this.#writtenHead);
      this.#writtenHead = 0;
    }
    if (end !== undefined) this.#spool.commit(end, spans);
    if (this.#mode === 'direct' && !this.#replaying) this.#spool.compact();
  }

  /**
   * Entering a replay: publishes in flight have settled, so the acknowledged prefix is final; what
   * follows it is replayed from the file, acknowledged or not (the duplicates are dropped by id).
   * Spans the spool never took and that failed are written now.
   */
  #settleWritten(): void {
    this.#advance();
    const rest = this.#written.slice(this.#writtenHead);
    this.#written = [];
    this.#writtenHead = 0;
    let spooled = 0;
    for (const e of rest) {
      if (e.end !== undefined || e.acked) continue;
      if (this.#write(e.span) !== undefined) spooled++;
      else this.#dropped(1);
    }
    this.#metrics.spooled.inc(spooled);
  }

  /**
   * A full spool refuses the newest spans. Each is counted at once; the log says so at the first
   * refusal and then at most every 10 s with the number since, so a long outage cannot flood it.
   */
  #dropped(n: number): void {
    this.#metrics.spoolDropped.inc(n);
    this.#droppedUnlogged += n;
    const now = Date.now();
    if (now - this.#dropLoggedAt < DROP_LOG_INTERVAL_MS) return;
    this.#log.error(
      { dropped: this.#droppedUnlogged, spoolBytes: this.#spool.fileBytes, maxBytes: this.#spool.maxBytes, path: this.#spool.path },
      'usage spool full: newest spans dropped until NATS acknowledges again',
    );
    this.#droppedUnlogged = 0;
    this.#dropLoggedAt = now;
  }

  /** Drops counted after the last log line are said before the sink moves on, never left unsaid. */
  #reportUnloggedDrops(): void {
    if (this.#droppedUnlogged === 0) return;
    this.#log.error({ dropped: this.#droppedUnlogged, path: this.#spool.path }, 'usage spool was full: newest spans dropped');
    this.#droppedUnlogged = 0;
  }

  #updateGauges(): void {
    const { spoolSpans: n, spoolBytes } = this.stats();
    this.#metrics.spoolBytes.set(spoolBytes);
    this.#metrics.spoolSpans.set(n);
    this.#metrics.queueDepth.set(this.#queue.length + this.#inFlight);
    if (n >= this.#nextWarnAt) {
      this.#log.warn({ spoolSpans: n, spoolBytes, path: this.#spool.path }, 'usage spool growing: NATS is not acknowledging spans');
      while (this.#nextWarnAt <= n) this.#nextWarnAt *= 10;
    } else if (n === 0) this.#nextWarnAt = 1;
  }

  async #publishOne(span: UsageSpan): Promise<void> {
    const js = this.#js;
    if (!js) throw new Error('not connected');
    await js.publish(spanSubject(this.#prefix, span), encodeSpan(span), {
      msgID: span.spanId,
      timeout: this.#opts.publishTimeoutMs ?? 2000,
    });
  }

  async #drain(): Promise<void> {
    const window = this.#opts.window ?? 128;
    while (this.#queue.length > 0 && this.#mode === 'direct') {
      const batch = this.#queue.splice(0, window);
      this.#inFlight += batch.length;
      const results = await Promise.allSettled(batch.map((e) => this.#publishOne(e.span)));
      this.#inFlight -= batch.length;
      let failed = 0;
      let firstError: unknown;
      batch.forEach((e, i) => {
        const r = results[i]!;
        if (r.status === 'fulfilled') e.acked = true;
        else {
          failed++;
          firstError ??= r.reason;
        }
      });
      this.#metrics.published.inc(batch.length - failed);
      if (failed > 0) {
        this.#log.warn({ err: errText(firstError), failed }, 'usage span publish failed; spans wait in the spool');
        this.#metrics.publishFailures.inc(failed);
        this.#metrics.spooled.inc(batch.filter((e) => !e.acked && e.end !== undefined).length);
        this.#enterSpool();
      }
      if (this.#mode === 'direct') this.#advance();
      this.#metrics.queueDepth.set(this.#queue.length + this.#inFlight);
    }
  }

  #kickReplay(): void {
    if (this.#mode !== 'spool' || !this.#js || this.#replaying || this.#closed) return;
    this.#replaying = this.#replay().finally(() => {
      this.#replaying = undefined;
    });
  }

  async #replay(): Promise<void> {
    const window = this.#opts.window ?? 128;
    // In-flight direct publishes must settle first, so that the acknowledged prefix is final.
    while (this.#draining) await this.#draining;
    this.#settleWritten();
    this.#updateGauges();
    for (;;) {
      const batch = await this.#spool.read(window);
      if (batch.lines.length === 0) {
        if (batch.nextOffset !== this.#spool.offset) {
          this.#spool.commit(batch.nextOffset, 0); // an oversized, unreadable line was skipped
          continue;
        }
        // Synchronous from the check to the switch: no span can be written in between.
        if (this.#spool.empty) {
          this.#spool.resetIfDrained();
          this.#mode = 'direct';
          this.#updateGauges();
          this.#reportUnloggedDrops();
          this.#log.info('usage spool replayed; publishing directly again');
          return;
        }
        await new Promise((r) => setImmediate(r));
        continue;
      }
      const spans: UsageSpan[] = [];
      for (const line of batch.lines) {
        try {
          spans.push(decodeSpan(line));
        } catch (err) {
          this.#log.error({ err: errText(err) }, 'unreadable line in usage spool skipped');
        }
      }
      const results = await Promise.allSettled(spans.map((s) => this.#publishOne(s)));
      const failures = results.filter((r) => r.status === 'rejected').length;
      if (failures > 0) {
        this.#metrics.publishFailures.inc(failures);
        this.#metrics.published.inc(spans.length - failures);
        this.#metrics.replayed.inc(spans.length - failures);
        return; // retried from the same offset on the next tick; duplicates are dropped by msgID
      }
      this.#metrics.published.inc(spans.length);
      this.#metrics.replayed.inc(spans.length);
      this.#spool.commit(batch.nextOffset, batch.lines.length);
      this.#updateGauges();
    }
  }
}

const DROP_LOG_INTERVAL_MS = 10_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
