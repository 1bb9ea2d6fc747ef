/**
 * NATS goes away while spans flow and comes back: every span reaches PostgreSQL exactly once.
 * Uses a private nats-server on a random port (never the machine's shared one).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrivateNats } from '../setup/private-nats.ts';
import { startAggregator } from '../../extproc/main/components/aggregator.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { eventually, freshDatabase, makeSpan, silentLogger } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vg-outage-'));
let db: Awaited<ReturnType<typeof freshDatabase>>;
let nats: PrivateNats;




beforeAll(async () => {
  db = await freshDatabase();
  nats = await PrivateNats.create(join(tmp, 'js'));
  await nats.start();
});

afterAll(async () => {
  await nats.stop();
  await db.drop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('NATS outage', () => {
  it('spools while NATS is down and replays in order when it returns: every span exactly once', async () => {
    const url = nats.url;
    const spoolDir = join(tmp, 'spool');
    const sink = await NatsSpanSink.start({ servers: url, spoolDir, logger: silentLogger, publishTimeoutMs: 500, retryMs: 200 });
    await sink.ready();
    const sent = [];
    for (let i = 0; i < 50; i++) sent.push(makeSpan({ user: 'before' }));
    for (const s of sent) sink.publish(s);
    await sink.flush();
    expect(sink.stats()).toMatchObject({ mode: 'direct', spoolSpans: 0 });

    await nats.stop();
    const during = Array.from({ length: 120 }, () => makeSpan({ user: 'during' }));
    for (const s of during) {
      sink.publish(s);
      if (during.indexOf(s) % 40 === 0) await new Promise((r) => setTimeout(r, 100));
    }
    await sink.flush();
    await eventually(() => sink.stats().mode === 'spool' && sink.stats().spoolSpans === 120, 10_000, 'spans spooled');
    expect(sink.stats().spoolBytes).toBeGreaterThan(0);

    await nats.start();
    await sink.drained(20_000);
    expect(sink.stats()).toMatchObject({ mode: 'direct', spoolSpans: 0, spoolBytes: 0 });
    const after = Array.from({ length: 30 }, () => makeSpan({ user: 'after' }));
    for (const s of after) sink.publish(s);
    await sink.flush();

    const nc = await connect({ servers: url });
    const agg = await startAggregator({ nc, pool: db.pool, logger: silentLogger, fetchExpiresMs: 200 });
    await eventually(async () => {
      const r = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_spans');
      return r.rows[0]!.n >= 200;
    }, 20_000, 'all spans aggregated');
    const rows = await db.pool.query<{ user_name: string; requests: string }>('SELECT user_name, sum(requests)::text AS requests FROM usage_daily GROUP BY 1 ORDER BY 1');
    expect(rows.rows).toEqual([
      { user_name: 'after', requests: '30' },
      { user_name: 'before', requests: '50' },
      { user_name: 'during', requests: '120' },
    ]);
    // The spooled spans kept their order in the stream.
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info('VOICEGATE_SPANS');
    expect(info.state.messages).toBe(200);
    const inStream: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage('VOICEGATE_SPANS', { seq });
      inStream.push((m.json() as { spanId: string }).spanId);
    }
    const duringIds = new Set(during.map((s) => s.spanId));
    expect(inStream.filter((id) => duringIds.has(id))).toEqual(during.map((s) => s.spanId));
    await agg.stop();
    await nc.close();
    await sink.close();
  });
});
