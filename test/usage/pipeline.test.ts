/**
 * publish → JetStream → aggregator → PostgreSQL, against the machine's real NATS and PostgreSQL
 * (fresh database and uniquely named streams per run).
 */
import { createServer, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAggregator } from '../../extproc/main/components/aggregator.ts';
import { main } from '../../extproc/main/main.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { writeSpans } from '../../extproc/adapters/postgres/rollup-writer.ts';
import { encodeSpan } from '../../extproc/core/usage/span.ts';
import { createUsageHttpHandler, queryUsage } from '../../extproc/adapters/postgres/usage-query.ts';
import { eventually, freshDatabase, makeSpan, silentLogger, uniqueName } from './helpers.ts';

const NATS = 'nats://127.0.0.1:4222';
let db: Awaited<ReturnType<typeof freshDatabase>>;
let nc: NatsConnection;
const streams: string[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'vg-usage-'));

beforeAll(async () => {
  db = await freshDatabase();
  nc = await connect({ servers: NATS });
});

afterAll(async () => {
  const jsm = await nc.jetstreamManager();
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc.close();
  await db.drop();
  rmSync(tmp, { recursive: true, force: true });
});

/** A unique stream + subject prefix, deleted after the file. */
function streamOpts() {
  const name = uniqueName('VGTEST_SPANS');
  streams.push(name);
  return { name, subjectPrefix: `${name.toLowerCase()}.spans` };
}

async function totalRequests(): Promise<number> {
  const r = await db.pool.query<{ n: string }>('SELECT coalesce(sum(requests), 0)::text AS n FROM usage_daily');
  return Number(r.rows[0]!.n);
}

async function clearTables(): Promise<void> {
  await db.pool.query('TRUNCATE usage_spans, usage_daily, usage_team_daily').catch(() => undefined);
}

describe('usage pipeline (real NATS + PostgreSQL)', () => {
  it('roll-ups equal what was published, by user, team, model and account; CLI and HTTP agree', async () => {
    await clearTables();
    const so = streamOpts();
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: join(tmp, 'a'), logger: silentLogger, ...so });
    await sink.ready();
    const agg = await startAggregator({ nc, pool: db.pool, logger: silentLogger, ...so, durable: uniqueName('agg'), fetchExpiresMs: 200 });
    const spans = [
      ...Array.from({ length: 40 }, () => makeSpan({ user: 'alice', teams: ['ops', 'voice'], characters: 1000, costUsd: '0.0195' })),
      ...Array.from({ length: 20 }, () => makeSpan({
        user: 'bob', teams: [], model: 'pulse', modelType: 'stt', account: 'smallest-stt', characters: undefined,
        audioSeconds: 30, costUsd: '0.003', routeKind: 'websocket', status: 101, closeCode: 1000,
      })),
      makeSpan({ user: 'mallory', teams: [], decision: 'deny', status: 403, characters: undefined, costUsd: '0' }),
    ];
    for (const s of spans) sink.publish(s);
    await sink.flush();
    await eventually(async () => (await totalRequests()) === spans.length, 20_000, 'roll-ups');

    const byUser = await queryUsage(db.pool, 'user', '2025-01-01');
    expect(byUser).toEqual([
      { key: 'alice', requests: 40, errors: 0, characters: 40000, audioSeconds: '0', costUsd: '0.78' },
      { key: 'bob', requests: 20, errors: 0, characters: 0, audioSeconds: '600', costUsd: '0.06' },
      { key: 'mallory', requests: 1, errors: 1, characters: 0, audioSeconds: '0', costUsd: '0' },
    ]);
    const byTeam = await queryUsage(db.pool, 'team', '2025-01-01');
    expect(byTeam.map((r) => [r.key, r.requests, r.costUsd])).toEqual([['ops', 40, '0.78'], ['voice', 40, '0.78'], ['', 21, '0.06']]);
    const byModel = await queryUsage(db.pool, 'model', '2025-01-01');
    expect(byModel.map((r) => [r.key, r.requests])).toEqual([['smallest/lightning-v3.1', 41], ['smallest/pulse', 20]]);
    expect((await queryUsage(db.pool, 'account', '2025-01-01')).map((r) => r.key)).toEqual(['smallest-tts', 'smallest-stt']);
    expect(await queryUsage(db.pool, 'user', '2025-03-02')).toEqual([]);

    let printed = '';
    expect(await main(['usage', '--by', 'user', '--since', '2025-01-01', '--json', '--database', db.url], new AbortController().signal, { stdout: (t) => (printed = t) })).toBe(0);
    expect(JSON.parse(printed).rows).toEqual(byUser);
    expect(await main(['usage', '--by', 'model', '--since', '2025-01-01', '--database', db.url], new AbortController().signal, { stdout: (t) => (printed = t) })).toBe(0);
    expect(printed.split('\n')[1]).toMatch(/^smallest\/lightning-v3\.1\s+41\s+1\s+40000\s+0\s+0\.78$/);

    const handler = createUsageHttpHandler(db.pool);
    const server = createServer((req, res) => void handler(req, res).then((handled) => { if (!handled) { res.writeHead(404); res.end(); } }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const get = (path: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      }).on('error', reject).end();
    });
    const ok = await get('/usage?by=user&since=2025-01-01');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).rows).toEqual(byUser);
    expect((await get('/usage?by=nope')).status).toBe(400);
    server.close();

    await agg.stop();
    await sink.close();
  });

  it('the same span published twice is counted once (NATS msg id and the span-id key)', async () => {
    await clearTables();
    const so = streamOpts();
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: join(tmp, 'b'), logger: silentLogger, ...so });
    await sink.ready();
    const span = makeSpan({ user: 'dup' });
    sink.publish(span);
    sink.publish(span);
    await sink.flush();
    // Bypass NATS de-duplication: a second copy without a msg id must still count once.
    await nc.jetstream().publish(`${so.subjectPrefix}.smallest.lightning-v3_1`, encodeSpan(span));
    const info = await (await nc.jetstreamManager()).streams.info(so.name);
    expect(info.state.messages).toBe(2);
    const durable = uniqueName('agg');
    const agg = await startAggregator({ nc, pool: db.pool, logger: silentLogger, ...so, durable, fetchExpiresMs: 200 });
    await eventually(async () => {
      const ci = await (await nc.jetstreamManager()).consumers.info(so.name, durable);
      return ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.delivered.stream_seq === 2;
    }, 20_000, 'consumer drained');
    expect(await totalRequests()).toBe(1);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM usage_spans')).rows[0].n).toBe(1);
    // And writing the batch again directly is a no-op.
    expect((await writeSpans(db.pool, [span, span])).inserted).toBe(0);
    expect(await totalRequests()).toBe(1);
    await agg.stop();
    await sink.close();
  });

  it('an aggregator that dies after commit and before ack loses nothing and counts nothing twice', async () => {
    await clearTables();
    const so = streamOpts();
    const durable = uniqueName('agg');
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: join(tmp, 'c'), logger: silentLogger, ...so });
    await sink.ready();
    const spans = Array.from({ length: 300 }, () => makeSpan({ user: 'crash' }));
    for (const s of spans) sink.publish(s);
    await sink.flush();

    // The first aggregator commits one batch, then hangs forever before acknowledging; its
    // connection is then closed, as a killed process's would be.
    const nc1 = await connect({ servers: NATS });
    let committed = 0;
    let hang: () => void = () => undefined;
    const dead = await startAggregator({
      nc: nc1, pool: db.pool, logger: silentLogger, ...so, durable, batchSize: 100, ackWaitMs: 1000, fetchExpiresMs: 200,
      afterCommit: async (batch) => {
        committed += batch.length;
        await new Promise<void>((r) => (hang = r));
      },
    });
    await eventually(() => committed === 100, 10_000, 'first batch committed');
    expect(await totalRequests()).toBe(100);
    await nc1.close();

    const nc2 = await connect({ servers: NATS });
    const agg = await startAggregator({ nc: nc2, pool: db.pool, logger: silentLogger, ...so, durable, batchSize: 100, ackWaitMs: 1000, fetchExpiresMs: 200 });
    await eventually(async () => {
      const ci = await (await nc.jetstreamManager()).consumers.info(so.name, durable);
      return ci.num_pending === 0 && ci.num_ack_pending === 0 && ci.num_redelivered === 0 && (await totalRequests()) === 300;
    }, 25_000, 'redelivery processed');
    expect(await totalRequests()).toBe(300);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM usage_spans')).rows[0].n).toBe(300);
    hang();
    await agg.stop();
    await dead.stop().catch(() => undefined);
    await nc2.close();
    await sink.close();
  });
});
