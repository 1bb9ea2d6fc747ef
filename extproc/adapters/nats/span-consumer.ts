/**
 * A durable JetStream pull consumer over the span stream: fetches batches, decodes them, hands
 * them to `handle`, and acknowledges only after `handle` resolved. Unreadable messages are
 * terminated (never redelivered); when `handle` fails the batch is nak'ed and retried later.
 */
import { AckPolicy, DeliverPolicy, nanos, type JetStreamManager, type JsMsg, type NatsConnection } from 'nats';
import type { Logger } from 'pino';
import { decodeSpan, type UsageSpan } from '../../core/usage/span.ts';
import { isNotFound } from './span-stream.ts';

export interface SpanConsumerOptions {
  readonly nc: NatsConnection;
  readonly stream: string;
  readonly durable: string;
  readonly logger: Logger;
  readonly handle: (spans: UsageSpan[]) => Promise<void>;
  /** Messages per batch (default 500). */
  readonly batchSize?: number;
  /** How long a fetch waits for messages (default and minimum 1 s, a nats.js limit). */
  readonly fetchExpiresMs?: number;
  /** Redelivery delay for unacknowledged messages (default 30 s). */
  readonly ackWaitMs?: number;
  /** Back-off after a failed batch (default 1 s). */
  readonly retryMs?: number;
  /** Spans still waiting for this consumer after each fetch (JetStream's pending count). */
  readonly onLag?: (pending: number) => void;
}

export interface RunningConsumer {
  /** Stops after the batch in progress; unacknowledged messages are redelivered later. */
  stop(): Promise<void>;
  /** Settles when the loop ends (rejects if it failed). */
  readonly done: Promise<void>;
}

/** Creates the durable consumer, or updates its ack wait / batch limits when it exists. */
export async function ensureConsumer(jsm: JetStreamManager, stream: string, durable: string, ackWaitMs: number, batchSize: number): Promise<void> {
  const cfg = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    max_ack_pending: Math.max(1000, batchSize * 4),
  };
  try {
    await jsm.consumers.info(stream, durable);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, cfg);
    return;
  }
  await jsm.consumers.update(stream, durable, { ack_wait: cfg.ack_wait, max_ack_pending: cfg.max_ack_pending });
}

/** Starts the consume loop. */
export async function startSpanConsumer(opts: SpanConsumerOptions): Promise<RunningConsumer> {
  const batchSize = opts.batchSize ?? 500;
  const log = opts.logger.child({ component: 'span-consumer', durable: opts.durable });
  await ensureConsumer(await opts.nc.jetstreamManager(), opts.stream, opts.durable, opts.ackWaitMs ?? 30_000, batchSize);
  const consumer = await opts.nc.jetstream().consumers.get(opts.stream, opts.durable);
  let stopping = false;
  let current: { stop(): void } | undefined;

  const loop = async () => {
    while (!stopping) {
      const batch: JsMsg[] = [];
      try {
        const iter = await consumer.fetch({ max_messages: batchSize, expires: Math.max(1000, opts.fetchExpiresMs ?? 1000) });
        current = iter;
        for await (const m of iter) batch.push(m);
      } catch (err) {
        if (stopping) break;
        log.warn({ err: errText(err) }, 'span fetch failed; retrying');
        await sleep(opts.retryMs ?? 1000);
        continue;
      } finally {
        current = undefined;
      }
      // Each delivery carries how many messages are still pending for the consumer after it.
      opts.onLag?.(batch.at(-1)?.info.pending ?? 0);
      if (batch.length === 0) continue;
      const spans: UsageSpan[] = [];
      const good: JsMsg[] = [];
      for (const m of batch) {
        try {
          spans.push(decodeSpan(m.data));
          good.push(m);
        } catch (err) {
          log.error({ err: errText(err), subject: m.subject, seq: m.seq }, 'unreadable span terminated');
          m.term();
        }
      }
      // A slow handler (OTLP retries, a long transaction) must not outlive the ack wait, or JetStream
      // would redeliver the batch while it is still being handled and it would be handled twice.
      const ackWaitMs = opts.ackWaitMs ?? 30_000;
      const progress = setInterval(() => {
        try {
          for (const m of good) m.working();
        } catch {
          // Connection closed: the batch will be redelivered, which the handlers tolerate.
        }
      }, Math.max(100, Math.floor(ackWaitMs / 3)));
      try {
        await opts.handle(spans);
      } catch (err) {
        log.error({ err: errText(err), spans: spans.length }, 'span batch failed; will be redelivered');
        for (const m of good) m.nak(opts.retryMs ?? 1000);
        await sleep(opts.retryMs ?? 1000);
        continue;
      } finally {
        clearInterval(progress);
      }
      for (const m of good) m.ack();
    }
  };
  const done = loop();
  return {
    done,
    async stop() {
      stopping = true;
      current?.stop();
      await done.catch(() => undefined);
      // Pushes the acks out before the caller closes the connection.
      if (!opts.nc.isClosed()) await opts.nc.flush().catch(() => undefined);
    },
  };
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
