import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Spool } from './spool.ts';

const root = mkdtempSync(join(tmpdir(), 'vg-spool-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, `d${n++}`);

/** Every line a new process would replay from this folder. */
async function replayable(dir: string): Promise<string[]> {
  const s = await Spool.open(dir);
  const out: string[] = [];
  for (;;) {
    const b = await s.read(1000);
    if (b.lines.length === 0) break;
    out.push(...b.lines);
    s.commit(b.nextOffset, b.lines.length);
  }
  await s.close();
  return out;
}

describe('Spool as a write-ahead log', () => {
  it('a written line is in the file when write() returns, before any fdatasync', async () => {
    const dir = fresh();
    const s = await Spool.open(dir, { syncIntervalMs: 60_000, syncBatch: 1_000_000 });
    s.write(['{"a":1}']);
    // What a process killed now leaves behind (the page cache is the kernel's).
    expect(readFileSync(join(dir, 'spool.jsonl'), 'utf8')).toBe('{"a":1}\n');
    await s.synced();
    await s.close();
  });

  it('only acknowledged prefixes are skipped after a restart, however acks were ordered', async () => {
    const dir = fresh();
    const s = await Spool.open(dir);
    const ends = ['a', 'b', 'c', 'd'].map((l) => s.write([l]).ends[0]!);
    s.commit(ends[1]!, 2); // a, b acknowledged; d acknowledged too, but after the unacknowledged c
    await s.synced();
    // Killed without close(): the offset file is written within 20 ms of the commit.
    await new Promise((r) => setTimeout(r, 50));
    expect(await replayable(dir)).toEqual(['c', 'd']);
  });

  it('compaction gives back acknowledged bytes and keeps the unacknowledged tail, across a restart', async () => {
    const dir = fresh();
    const s = await Spool.open(dir, { compactBytes: 1024 });
    const line = 'x'.repeat(99);
    let end = 0;
    for (let i = 0; i < 50; i++) end = s.write([`${line}${i}`.slice(0, 100)]).ends[0]!;
    s.commit(end, 50);
    const tail = s.write(['tail-1', 'tail-2']).ends;
    expect(s.compact()).toBe(true);
    expect(statSync(join(dir, 'spool.jsonl')).size).toBe('tail-1\ntail-2\n'.length);
    // Logical offsets go on across the new file.
    s.commit(tail[0]!, 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(await replayable(dir)).toEqual(['tail-2']);
  });

  it('an offset saved for an older file (before a rename) is not applied to the new one', async () => {
    const dir = fresh();
    const s = await Spool.open(dir);
    s.write(['one', 'two']);
    await s.close();
    const ino = statSync(join(dir, 'spool.jsonl')).ino;
    writeFileSync(join(dir, 'spool.offset'), `4 ${ino + 1}`);
    expect(await replayable(dir)).toEqual(['one', 'two']);
    writeFileSync(join(dir, 'spool.offset'), `4 ${ino}`);
    expect(await replayable(dir)).toEqual([]);
  });

  it('a torn last line is terminated at open, so the next span is not glued to it', async () => {
    const dir = fresh();
    const s0 = await Spool.open(dir);
    await s0.close();
    writeFileSync(join(dir, 'spool.jsonl'), 'whole\n{"torn":');
    const s = await Spool.open(dir);
    s.write(['next']);
    await s.close();
    expect(await replayable(dir)).toEqual(['whole', '{"torn":', 'next']);
  });
});
