/**
 * Span durability cost (issue 10 point 4), on its own: `node bin/run-ts.js bench/cases/span-durability.ts [spans] [--only-nats]`.
 * Spans per second through the write-ahead spool and the file sink with their group commit (one
 * fdatasync per ≤ 5 ms or 256 spans), against the same writes with an fdatasync per span and with
 * none at all (what a kill -9 survives, but not a power loss); then the NATS sink end to end
 * (write, publish, acknowledgement) against NATS_URL (default the machine's 127.0.0.1:4222), on a
 * stream of its own that is deleted afterwards. Prints one line per case; asserts nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { pino } from 'pino';
import { FileSpanSink } from '../../extproc/adapters/files/file-sink.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { Spool } from '../../extproc/adapters/nats/spool.ts';
import type { UsageSpan } from '../../extproc/core/usage/span.ts';
import { makeSpan } from '../../test/usage/helpers.ts';

const silent = pino({ level: 'silent' });

interface Figure {
  readonly name: string;
  readonly spansPerSec: number;
  readonly syncs: number;
  readonly spans: number;
}

async function spool(name: string, spans: readonly UsageSpan[], opts: { syncBatch?: number; syncIntervalMs?: number }): Promise<Figure> {
  const dir = mkdtempSync(join(tmpdir(), 'vg-bench-spool-'));
  let syncs = 0;
  const s = await Spool.open(dir, { ...opts, maxBytes: 2 ** 40, onSync: () => void syncs++ });
  const start = process.hrtime.bigint();
  // As the sink does: one write per span as exchanges end, the event loop turning in between.
  for (let i = 0; i < spans.length; i++) {
    s.write([JSON.stringify(spans[i])]);
    if (opts.syncBatch === 1) await s.synced();
    else if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  await s.synced();
  const sec = Number(process.hrtime.bigint() - start) / 1e9;
  await s.close();
  rmSync(dir, { recursive: true, force: true });
  return { name, spansPerSec: spans.length / sec, syncs, spans: spans.length };
}

async function fileSink(spans: readonly UsageSpan[]): Promise<Figure> {
  const dir = mkdtempSync(join(tmpdir(), 'vg-bench-file-'));
  let syncs = 0;
  const sink = new FileSpanSink(join(dir, 'spans.jsonl'), silent, { maxBytes: 2 ** 40, onSync: () => void syncs++ });
  const start = process.hrtime.bigint();
  for (let i = 0; i < spans.length; i++) {
    sink.publish(spans[i]!);
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  await sink.flush();
  const sec = Number(process.hrtime.bigint() - start) / 1e9;
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
  return { name: 'file sink (spans.jsonl), group commit', spansPerSec: spans.length / sec, syncs, spans: spans.length };
}

async function natsSink(spans: readonly UsageSpan[]): Promise<Figure | string> {
  const servers = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
  const name = `VG_BENCH_DURABLE_${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'vg-bench-nats-'));
  let syncs = 0;
  const counter = { inc: () => void syncs++ };
  const none = { inc() {}, set() {} };
  const metrics = { published: none, publishFailures: none, spooled: none, spoolBytes: none, spoolSpans: none, spoolDropped: none, queueDepth: none, replayed: none, spoolSyncs: counter, spoolSyncedSpans: none, aggregated: none, duplicates: none, otelExported: none, consumerLag: none };
  let sink: NatsSpanSink | undefined;
  try {
    sink = await NatsSpanSink.start({ servers, spoolDir: dir, logger: silent, name, subjectPrefix: `${name.toLowerCase()}.spans`, metrics });
    await Promise.race([sink.ready(), new Promise((_, rej) => setTimeout(() => rej(new Error('NATS not reachable')), 5000))]);
    const start = process.hrtime.bigint();
    for (let i = 0; i < spans.length; i++) {
      sink.publish(spans[i]!);
      if (i % 64 === 63) await new Promise((r) => setImmediate(r));
    }
    await sink.drained(120_000);
    const sec = Number(process.hrtime.bigint() - start) / 1e9;
    return { name: 'NATS sink: spool write + publish + ack', spansPerSec: spans.length / sec, syncs, spans: spans.length };
  } catch (err) {
    return `NATS sink skipped: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await sink?.close();
    const nc = await connect({ servers }).catch(() => undefined);
    if (nc) {
      await (await nc.jetstreamManager()).streams.delete(name).catch(() => undefined);
      await nc.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function spanDurability(count = 20_000): Promise<Array<Figure | string>> {
  const spans = Array.from({ length: count }, (_, i) => makeSpan({ user: `u${i % 31}` }));
  const perSpan = spans.slice(0, Math.min(count, 2_000));
  if (process.argv.includes('--only-nats')) return [await natsSink(spans)];
  await spool('warm-up', spans.slice(0, 2_000), {});
  return [
    await spool('spool, no fdatasync (survives kill -9 only)', spans, { syncBatch: Number.MAX_SAFE_INTEGER, syncIntervalMs: 2 ** 30 }),
    await spool('spool, group commit (5 ms / 256 spans)', spans, {}),
    await spool('spool, fdatasync awaited per span', perSpan, { syncBatch: 1 }),
    await fileSink(spans),
    await natsSink(spans),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const figures = await spanDurability(Number(process.argv[2] ?? 20_000));
  for (const f of figures) {
    if (typeof f === 'string') console.log(f);
    else console.log(`${f.name.padEnd(48)} ${Math.round(f.spansPerSec).toString().padStart(8)} spans/s  ${f.syncs} fdatasync for ${f.spans} spans (${f.syncs ? (f.spans / f.syncs).toFixed(1) : '–'} per sync)`);
  }
}
