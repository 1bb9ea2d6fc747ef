/**
 * Issue 9 point 14, the span spool: a large spool left by an earlier run replays completely and
 * exactly once without holding up the start; a full spool refuses the newest spans and says so
 * (metric and log) instead of growing without bound; and spans a file-mode run wrote to
 * `spans.jsonl` are never replayed to NATS as if they had been spooled.
 * Against the machine's NATS (127.0.0.1:4222), each test on its own stream.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AckPolicy, connect, DeliverPolicy, type NatsConnection } from 'nats';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSpanSink } from '../../extproc/adapters/files/file-sink.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { usageMetrics } from '../../extproc/adapters/prometheus/usage-metrics.ts';
import { decodeSpan } from '../../extproc/core/usage/span.ts';
import { makeSpan, silentLogger, uniqueName } from './helpers.ts';

const NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const tmp = mkdtempSync(join(tmpdir(), 'vg-spool-bounds-'));
let nc: NatsConnection;
const streams: string[] = [];

beforeAll(async () => {
  nc = await connect({ servers: NATS });
});

afterAll(async () => {
  const jsm = await nc.jetstreamManager();
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A stream name and subject prefix nobody else uses. */
function privateStream(): { name: string; subjectPrefix: string } {
  const name = uniqueName('VG_SPOOL').toUpperCase();
  streams.push(name);
  return { name, subjectPrefix: `${name.toLowerCase()}.spans` };
}

/** Every span id in the stream, in stream order (duplicates kept, so a double shows). */
async function spanIdsIn(stream: string): Promise<string[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream);
  if (info.state.messages === 0) return [];
  const consumer = await jsm.consumers.add(stream, { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All });
  const c = await nc.jetstream().consumers.get(stream, consumer.name);
  const ids: string[] = [];
  const it = await c.fetch({ max_messages: info.state.messages, expires: 5000 });
  for await (const m of it) ids.push(decodeSpan(m.string()).spanId);
  await jsm.consumers.delete(stream, consumer.name);
  return ids;
}

async function messagesIn(stream: string): Promise<number> {
  const jsm = await nc.jetstreamManager();
  return (await jsm.streams.info(stream)).state.messages;
}

/** JSON log lines written by a pino logger, parsed. */
function capturingLogger(level = 'info') {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  return { logger, lines };
}

describe('a large spool left by an earlier run', () => {
  it('50,000 spans replay completely, each exactly once, while the event loop stays free', { timeout: 120_000 }, async () => {
    const dir = join(tmp, 'large');
    const stream = privateStream();
    const spans = Array.from({ length: 50_000 }, (_, i) => makeSpan({ user: `u${i % 97}` }));
    // As a NATS outage leaves it: one JSON line per span, nothing replayed yet.
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'spool.jsonl'), spans.map((s) => `${JSON.stringify(s)}\n`).join(''));
    const spoolBytes = statSync(join(dir, 'spool.jsonl')).size;

    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const startedAt = Date.now();
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: dir, logger: silentLogger, ...stream, retryMs: 100 });
    const startMs = Date.now() - startedAt;
    // The sink takes new spans at once, before the left-over spool is even counted.
    const fresh = makeSpan({ user: 'during-replay' });
    sink.publish(fresh);
    await sink.drained(100_000);
    const replayMs = Date.now() - startedAt;
    delay.disable();
    await sink.close();

    const ids = await spanIdsIn(stream.name);
    expect(ids.length).toBe(spans.length + 1);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set([...spans.map((s) => s.spanId), fresh.spanId]));
    // The spool is emptied once replayed.
    expect(statSync(join(dir, 'spool.jsonl')).size).toBe(0);
    const maxBlockMs = delay.max / 1e6;
    console.log(`spool of ${spans.length} spans (${(spoolBytes / 2 ** 20).toFixed(1)} MiB): start() ${startMs} ms, replayed in ${replayMs} ms, longest event-loop stall ${maxBlockMs.toFixed(1)} ms`);
    expect(startMs).toBeLessThan(1000);
    // Reading and scanning the whole 34 MiB file at once stalled the loop ~480 ms; chunks take ~10-40 ms.
    expect(maxBlockMs).toBeLessThan(250);
  });
});

describe('a full spool', () => {
  it('keeps the oldest spans up to --spool-max-bytes, refuses the newest, counts and logs them; the kept ones replay later', async () => {
    const dir = join(tmp, 'full');
    const stream = privateStream();
    const registry = new Registry();
    const { logger, lines } = capturingLogger();
    const spans = Array.from({ length: 100 }, () => makeSpan());
    const lineBytes = Buffer.byteLength(`${JSON.stringify(spans[0])}\n`);
    const cap = lineBytes * 40 + Math.floor(lineBytes / 2); // room for 40 spans, not 41
    // NATS unreachable: everything goes to the spool.
    const down = await NatsSpanSink.start({ servers: 'nats://127.0.0.1:1', spoolDir: dir, logger, ...stream, retryMs: 50, spoolMaxBytes: cap, metrics: usageMetrics(registry) });
    for (const s of spans.slice(0, 30)) down.publish(s);
    await down.flush();
    for (const s of spans.slice(30)) down.publish(s);
    await down.flush();
    await down.close();

    expect(statSync(join(dir, 'spool.jsonl')).size).toBeLessThanOrEqual(cap);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(/^voicegate_usage_spool_dropped_total 60$/m);
    expect(metrics).toMatch(/^voicegate_usage_spans_spooled_total 40$/m);
    const errors = lines.filter((l) => l.level >= 50);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0]!.msg).toContain('usage spool full');
    expect(errors.reduce((n, l) => n + Number(l['dropped']), 0)).toBe(60);

    const up = await NatsSpanSink.start({ servers: NATS, spoolDir: dir, logger: silentLogger, ...stream, retryMs: 50 });
    await up.drained();
    await up.close();
    expect(await spanIdsIn(stream.name)).toEqual(spans.slice(0, 40).map((s) => s.spanId));
  });
});

describe('from file mode to NATS in the same --spool-dir', () => {
  it('the spans the file sink wrote are not replayed and no "not acknowledging" warning is logged', async () => {
    const dir = join(tmp, 'switch');
    const stream = privateStream();
    const file = new FileSpanSink(join(dir, 'spans.jsonl'), silentLogger);
    for (let i = 0; i < 25; i++) file.publish(makeSpan({ user: 'file-mode' }));
    await file.close();
    expect(statSync(join(dir, 'spans.jsonl')).size).toBeGreaterThan(0);

    const { logger, lines } = capturingLogger();
    const sink = await NatsSpanSink.start({ servers: NATS, spoolDir: dir, logger, ...stream, retryMs: 50 });
    await sink.ready();
    const live = makeSpan({ user: 'nats-mode' });
    sink.publish(live);
    await sink.drained();
    await sink.close();

    expect(await spanIdsIn(stream.name)).toEqual([live.spanId]);
    expect(await messagesIn(stream.name)).toBe(1);
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
    expect(lines.some((l) => /not acknowledging/.test(l.msg))).toBe(false);
  });
});
