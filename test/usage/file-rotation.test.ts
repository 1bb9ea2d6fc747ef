/**
 * Issue 9 point 14: `spans.jsonl` (the span file without NATS) is rotated by size, keeping a fixed
 * number of older files, so a long run without NATS cannot fill the disk; and the pipeline passes
 * the command's settings through.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileSpanSink } from '../../extproc/adapters/files/file-sink.ts';
import { decodeSpan } from '../../extproc/core/usage/span.ts';
import { createUsagePipeline } from '../../extproc/main/usage-pipeline.ts';
import { allowWith, makeSpan, silentLogger, testExchange } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vg-rotation-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const idsIn = (file: string) => readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => decodeSpan(l).spanId);

describe('FileSpanSink rotation', () => {
  it('moves the file to .1, .2 … at maxBytes, keeps `keep` of them, and loses no span it keeps', async () => {
    const dir = join(tmp, 'rotate');
    const path = join(dir, 'spans.jsonl');
    const spans = Array.from({ length: 60 }, () => makeSpan());
    const lineBytes = Buffer.byteLength(`${JSON.stringify(spans[0])}\n`);
    const maxBytes = lineBytes * 10; // ten spans per file
    const sink = new FileSpanSink(path, silentLogger, { maxBytes, keep: 2 });
    for (const s of spans) sink.publish(s);
    await sink.close();

    for (const f of [path, `${path}.1`, `${path}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(maxBytes);
    expect(existsSync(`${path}.3`)).toBe(false);
    // Newest in spans.jsonl, then .1, then .2: the last 30 spans, in order, each once.
    const kept = [...idsIn(`${path}.2`), ...idsIn(`${path}.1`), ...idsIn(path)];
    expect(kept).toEqual(spans.slice(-30).map((s) => s.spanId));
  });

  it('continues the size of a file an earlier run left, and keep 0 keeps no old file', async () => {
    const dir = join(tmp, 'reopen');
    const path = join(dir, 'spans.jsonl');
    const spans = Array.from({ length: 8 }, () => makeSpan());
    const lineBytes = Buffer.byteLength(`${JSON.stringify(spans[0])}\n`);
    const first = new FileSpanSink(path, silentLogger, { maxBytes: lineBytes * 5, keep: 0 });
    for (const s of spans.slice(0, 4)) first.publish(s);
    await first.close();
    const second = new FileSpanSink(path, silentLogger, { maxBytes: lineBytes * 5, keep: 0 });
    for (const s of spans.slice(4)) second.publish(s);
    await second.close();
    expect(idsIn(path)).toEqual(spans.slice(5).map((s) => s.spanId));
    expect(existsSync(`${path}.1`)).toBe(false);
  });

  it('the usage pipeline without NATS rotates with the settings it is given', async () => {
    const dir = join(tmp, 'pipeline');
    const p = await createUsagePipeline({ spoolDir: dir, logger: silentLogger, spanFileMaxBytes: 1500, spanFileKeep: 1 });
    for (let i = 0; i < 12; i++) {
      p.observe(testExchange({ startedAtMs: Date.now() }), allowWith({ user: 'alice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts', characters: 5 })).end({ status: 200 });
    }
    await p.close();
    expect(statSync(join(dir, 'spans.jsonl')).size).toBeLessThanOrEqual(1500);
    expect(statSync(join(dir, 'spans.jsonl.1')).size).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'spans.jsonl.2'))).toBe(false);
  });
});
