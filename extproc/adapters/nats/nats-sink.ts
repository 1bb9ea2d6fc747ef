/**
 * SpanSink that publishes to NATS JetStream with acknowledgement, `Nats-Msg-Id` = span id, and
 * falls back to the disk spool while NATS is unreachable or not acknowledging.
 *
 * Order: in `direct` mode spans go from a bounded in-memory queue to JetStream, a window of
 * publishes in flight. When a publish fails or the queue is full the sink switches to `spool`
 * mode: that span and every later one is appended to the spool, and a replay loop publishes the
 * spool in file order once NATS answers again; only when the spool is empty does the sink go back
 * to `direct`. A span that was in flight during the switch may land slightly out of order; spans
 * are independent, so only the de-duplication matters, and that is by span id.
 *
 * Loss: the spool has a size cap (`spoolMaxBytes`); past it the newest spans are refused, counted
 * in `voicegate_usage_spool_dropped_total` and logged as errors, never dropped without a trace.
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
  /** Spans held in memory before new ones go to the spool (default 10,000). */
  readonly maxQueue?: number;
  /** Publishes in flight at once (default 128). */
  readonly window?: number;
  /** How long to wait for a JetStream acknowledgement (default 2 s). */
  readonly publishTimeoutMs?: number;
  /** Replay attempt interval while spooling (default 500 ms). */
  readonly retryMs?: number;
  /** Largest spool file; once full, newer spans are refused, counted and logged (default 256 MiB). */
  readonly spoolMaxBytes?: number;
  readonly metrics?: UsageMetrics;
}

export type SinkMode = 'direct' | 'spool';

export interface NatsSinkStats {
  readonly mode: SinkMode;
  readonly connected: boolean;
  readonly queued: number;
  readonly inFlight: number;
  readonly spoolSpans: number;
  readonly spoolBytes: number;
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
  #queue: UsageSpan[] = [];
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
    return new NatsSpanSink(opts, await Spool.open(opts.spoolDir, opts.spoolMaxBytes !== undefined ? { maxBytes: opts.spoolMaxBytes } : {}));
  }

  /** Resolves once connected, the stream exists and a left-over spool has been replayed. */
  ready(): Promise<void> {
    return this.#connecting;
  }

  stats(): NatsSinkStats {
    return {
      mode: this.#mode,
      connected: this.#js !== undefined && !this.#nc?.isClosed(),
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      spoolSpans: this.#spool.spans,
      spoolBytes: this.#spool.bytes,
    };
  }

  publish(span: UsageSpan): void {
    if (this.#closed) {
      this.#log.error({ spanId: span.spanId }, 'span published after close; dropped');
      return;
    }
    if (this.#mode === 'direct' && this.#queue.length + this.#inFlight >= (this.#opts.maxQueue ?? 10_000)) {
      this.#log.warn('usage publish queue full; spooling spans to disk');
      this.#mode = 'spool';
    }
    if (this.#mode === 'spool') {
      this.#toSpool([span]);
      return;
    }
    this.#queue.push(span);
    this.#metrics.queueDepth.set(this.#queue.length + this.#inFlight);
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  async flush(): Promise<void> {
    while (this.#draining || this.#queue.length > 0) {
      if (this.#draining) await this.#draining;
      else if (this.#queue.length > 0 && this.#mode === 'spool') this.#toSpool(this.#queue.splice(0));
    }
    await this.#spool.settled();
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
      else if (s.type === 'disconnect') this.#log.warn('usage publisher lost NATS; spans will be spooled if unacknowledged');
    }
  }

  #toSpool(spans: readonly UsageSpan[]): void {
    if (spans.length === 0) return;
    this.#spool.append(spans.map((s) => JSON.stringify(s))).then(
      ({ refused }) => {
        this.#metrics.spooled.inc(spans.length - refused);
        if (refused > 0) this.#dropped(refused);
        this.#updateGauges();
      },
      (err: unknown) => this.#log.error({ err: errText(err), spans: spans.length }, 'usage spool write failed; spans lost'),
    );
    this.#updateGauges();
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
    this.#metrics.spoolBytes.set(this.#spool.bytes);
    this.#metrics.spoolSpans.set(this.#spool.spans);
    this.#metrics.queueDepth.set(this.#queue.length + this.#inFlight);
    const n = this.#spool.spans;
    if (n >= this.#nextWarnAt) {
      this.#log.warn({ spoolSpans: n, spoolBytes: this.#spool.bytes, path: this.#spool.path }, 'usage spool growing: NATS is not acknowledging spans');
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
    while (this.#queue.length > 0) {
      if (this.#mode === 'spool') {
        this.#toSpool(this.#queue.splice(0));
        break;
      }
      const batch = this.#queue.splice(0, window);
      this.#inFlight += batch.length;
      const results = await Promise.allSettled(batch.map((s) => this.#publishOne(s)));
      this.#inFlight -= batch.length;
      const failed = batch.filter((_, i) => results[i]!.status === 'rejected');
      this.#metrics.published.inc(batch.length - failed.length);
      if (failed.length > 0) {
        const first = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        this.#log.warn({ err: errText(first.reason), failed: failed.length }, 'usage span publish failed; spooling');
        this.#metrics.publishFailures.inc(failed.length);
        this.#mode = 'spool';
        this.#toSpool(failed);
      }
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
    for (;;) {
      // In-flight direct publishes must settle first, so their failures land before the replay ends.
      if (this.#draining) await this.#draining;
      await this.#spool.settled();
      const batch = await this.#spool.read(window);
      if (batch.lines.length === 0) {
        if (batch.nextOffset !== this.#spool.offset) {
          this.#spool.commit(batch.nextOffset, 0); // an oversized, unreadable line was skipped
          continue;
        }
        if (this.#spool.resetIfDrained() && !this.#draining && this.#queue.length === 0) {
          this.#mode = 'direct';
          this.#updateGauges();
          this.#reportUnloggedDrops();
          this.#log.info('usage spool replayed; publishing directly again');
          return;
        }
        if (this.#spool.empty) return;
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
        return; // retried from the same offset on the next tick; duplicates are dropped by msgID
      }
      this.#metrics.published.inc(spans.length);
      this.#spool.commit(batch.nextOffset, batch.lines.length);
      this.#updateGauges();
    }
  }
}

const DROP_LOG_INTERVAL_MS = 10_000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
