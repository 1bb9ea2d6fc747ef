import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FileSpanSink } from './file-sink.ts';
import { makeSpan } from '../../../test/usage/helpers.ts';

describe('FileSpanSink durability', () => {
  it('a span is in spans.jsonl when publish() returns, and flush() waits for one group fdatasync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vg-file-unit-'));
    const syncs: number[] = [];
    const sink = new FileSpanSink(join(dir, 'spans.jsonl'), pino({ level: 'silent' }), { syncIntervalMs: 60_000, onSync: (n) => syncs.push(n) });
    const spans = [makeSpan(), makeSpan(), makeSpan()];
    for (const s of spans) sink.publish(s);
    // No await yet: this is what a process killed at this moment leaves behind.
    expect(readFileSync(join(dir, 'spans.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { spanId: string }).spanId)).toEqual(spans.map((s) => s.spanId));
    expect(syncs).toEqual([]);
    await sink.flush();
    expect(syncs).toEqual([3]);
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
