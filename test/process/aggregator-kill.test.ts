/**
 * `voicegate aggregator` as a real process, SIGKILLed while it consumes and started again: every
 * span must be in PostgreSQL exactly once, in the raw table and in the roll-ups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sumDecimals } from '../../extproc/core/usage/decimal.ts';
import { NatsSpanSink } from '../../extproc/adapters/nats/nats-sink.ts';
import { eventually, makeSpan, silentLogger, uniqueName } from '../usage/helpers.ts';
import { NATS_URL, REPO, useIsolatedRun } from '../usage-e2e/helpers.ts';

const TOTAL = 2000;
const KILLS = 3;
const run = useIsolatedRun('vg-agg-kill-', 'VGKILL_SPANS');
const { tmp, stream, children } = run;
const subjectPrefix = `${stream.toLowerCase()}.spans`;
const durable = uniqueName('agg');

function startAggregatorProcess(): { child: ChildProcess; stderr: () => string; exited: Promise<number | string> } {
  const child = spawn(
    process.execPath,
    [
      'bin/voicegate.js', 'aggregator',
      '--nats', NATS_URL, '--database', run.db.url,
      '--stream', stream, '--subject-prefix', subjectPrefix, '--durable', durable,
      // Small batches so that a kill lands mid-stream; a short ack wait so the restart needs no 30 s.
      '--batch', '50', '--ack-wait', '1000',
    ],
    { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? 'unknown')));
  return { child, stderr: () => err, exited };
}

async function count(sql: string): Promise<string> {
  const r = await run.db.pool.query<{ v: string }>(sql).catch(() => ({ rows: [{ v: '0' }] }));
  return r.rows[0]?.v ?? '0';
}
const rawCount = async () => Number(await count('SELECT count(*)::text AS v FROM usage_spans'));

describe('aggregator killed mid-stream (real process, NATS, PostgreSQL)', () => {
  it('SIGKILL while consuming, restart: every span counted exactly once', { timeout: 60_000 }, async () => {
    // Spans with varied quantities, so a doubled or lost batch changes the sums.
    const spans = Array.from({ length: TOTAL }, (_, i) => {
      const characters = 1 + (i % 97);
      const units = BigInt(characters) * 195n; // 0.0195 per 1K chars = 0.0000195 per char
      return makeSpan({ user: `user${i % 7}`, teams: i % 2 ? ['voice'] : [], characters, costUsd: `0.${units.toString().padStart(7, '0')}` });
    });
    const expectedChars = spans.reduce((n, s) => n + (s.characters ?? 0), 0);
    const expectedCost = sumDecimals(spans.map((s) => s.costUsd));

    const sink = await NatsSpanSink.start({ servers: NATS_URL, spoolDir: join(tmp, 'spool'), logger: silentLogger, name: stream, subjectPrefix });
    await sink.ready();
    for (const s of spans) sink.publish(s);
    await sink.flush();
    expect((await (await run.nc.jetstreamManager()).streams.info(stream)).state.messages).toBe(TOTAL);

    // Three times: start, wait for new rows (polled tightly, so the kill lands while batches
    // remain), SIGKILL. Each kill lands at a random point of fetch → transaction → ack.
    let atKill = 0;
    for (let round = 0; round < KILLS; round++) {
      const p = startAggregatorProcess();
      const deadline = Date.now() + 20_000;
      for (let seen = atKill; seen <= atKill; ) {
        seen = await rawCount();
        if (seen >= TOTAL) throw new Error(`aggregator finished all ${TOTAL} spans before kill ${round + 1}`);
        if (Date.now() > deadline || p.child.exitCode !== null) throw new Error(`no new span written: ${p.stderr()}`);
        if (seen <= atKill) await new Promise((r) => setTimeout(r, 5));
      }
      p.child.kill('SIGKILL');
      expect(await p.exited).toBe('SIGKILL');
      const now = await rawCount();
      expect(now).toBeGreaterThan(atKill);
      expect(now).toBeLessThan(TOTAL);
      atKill = now;
    }

    const last = startAggregatorProcess();
    await eventually(async () => {
      if ((await rawCount()) !== TOTAL) return false;
      const ci = await (await run.nc.jetstreamManager()).consumers.info(stream, durable);
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    }, 20_000, `all spans aggregated after restart (stderr: ${last.stderr()})`);
    last.child.kill('SIGTERM');
    expect(await last.exited).toBe(0);

    expect(Number(await count('SELECT count(DISTINCT span_id)::text AS v FROM usage_spans'))).toBe(TOTAL);
    expect(await count('SELECT sum(requests)::text AS v FROM usage_daily')).toBe(String(TOTAL));
    expect(await count('SELECT sum(characters)::text AS v FROM usage_daily')).toBe(String(expectedChars));
    expect(sumDecimals([await count('SELECT sum(cost_usd)::text AS v FROM usage_daily')])).toBe(expectedCost);
    // Teams: the odd half is in `voice`, the even half has none ('').
    expect(await count("SELECT sum(requests)::text AS v FROM usage_team_daily WHERE team = 'voice'")).toBe(String(TOTAL / 2));
    expect(await count("SELECT sum(requests)::text AS v FROM usage_team_daily WHERE team = ''")).toBe(String(TOTAL / 2));
    for (let u = 0; u < 7; u++) {
      const want = spans.filter((s) => s.user === `user${u}`);
      expect(await count(`SELECT sum(requests)::text AS v FROM usage_daily WHERE user_name = 'user${u}'`)).toBe(String(want.length));
    }
    await sink.close();
  });
});
