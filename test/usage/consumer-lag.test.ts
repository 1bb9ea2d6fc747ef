/** The consumers' lag gauge: how many spans of the stream a consumer has not received yet. */
import { connect } from 'nats';
import { describe, expect, it } from 'vitest';
import { startSpanConsumer } from '../../extproc/adapters/nats/span-consumer.ts';
import { ensureSpanStream, spanSubject } from '../../extproc/adapters/nats/span-stream.ts';
import { encodeSpan } from '../../extproc/core/usage/span.ts';
import { eventually, makeSpan, silentLogger, uniqueName } from './helpers.ts';

const NATS_URL = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

describe('consumer lag', () => {
  it('reports the spans still pending after each fetch, down to 0 once caught up', async () => {
    const nc = await connect({ servers: NATS_URL });
    const stream = uniqueName('VG_LAG');
    const prefix = uniqueName('vg.lag');
    const jsm = await nc.jetstreamManager();
    await ensureSpanStream(jsm, { name: stream, subjectPrefix: prefix });
    try {
      for (let i = 0; i < 30; i++) {
        const span = makeSpan();
        await nc.jetstream().publish(spanSubject(prefix, span), encodeSpan(span), { msgID: span.spanId });
      }
      const lags: number[] = [];
      let handled = 0;
      const consumer = await startSpanConsumer({
        nc, stream, durable: uniqueName('lag'), logger: silentLogger, batchSize: 10,
        onLag: (n) => lags.push(n),
        handle: async (spans) => {
          handled += spans.length;
        },
      });
      await eventually(() => handled === 30 && lags.at(-1) === 0, 20_000, 'caught up');
      await consumer.stop();
      // Three batches of 10 from 30: 20 and 10 still pending after the first two.
      expect(lags.slice(0, 3)).toEqual([20, 10, 0]);
    } finally {
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
  });
});
