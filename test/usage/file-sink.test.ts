import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createUsagePipeline } from '../../extproc/main/usage-pipeline.ts';
import { decodeSpan } from '../../extproc/core/usage/span.ts';
import { allowWith, testExchange } from './helpers.ts';

describe('usage pipeline without NATS', () => {
  it('writes one JSON line per exchange and logs a summary line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vg-file-'));
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const p = await createUsagePipeline({ spoolDir: dir, logger });
    const o = p.observe(
      testExchange({ startedAtMs: Date.now() }),
      allowWith({ user: 'alice', provider: 'smallest', model: 'lightning-v3.1', model_type: 'tts', characters: 5 }),
    );
    o.end({ status: 200 });
    await p.close();
    const spans = readFileSync(join(dir, 'spans.jsonl'), 'utf8').trim().split('\n').map((l) => decodeSpan(l));
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ user: 'alice', characters: 5, costUsd: '0.0000975' });
    expect(lines.some((l) => JSON.parse(l).msg === 'usage' && JSON.parse(l).costUsd === '0.0000975')).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });
});
