/**
 * Case 7 — what limits add to admission, in this process (no sockets, so the figure is the
 * admission's own cost, not gRPC's): Envoy's Check (`decideCheck`: decision, then the ledger's
 * acquire and a slot, then the slot's release as the ext_proc stream's end does it) against the
 * same Check without limits; and the edge's admission (`admitDecision` + release) alone. One call
 * at a time, each timed with hrtime; paths alternate within every round. Local grant (the whole
 * account, `--limits pod`), so no admission needs a ledger round trip.
 *
 * Runs alone: `node bin/run-ts.js bench/cases/admission.ts [--quick]`.
 */
import { pino } from 'pino';
import { availableParallelism } from 'node:os';
import { StaticSnapshotSource, type Snapshot } from '../../extproc/core/config/snapshot.ts';
import { createAuthorizer } from '../../extproc/core/decision/authorizer.ts';
import type { Allow } from '../../extproc/core/decision/types.ts';
import { admitDecision } from '../../extproc/core/limits/admission.ts';
import { createAdmissionLedger } from '../../extproc/core/limits/ledger.ts';
import { SlotTable } from '../../extproc/core/limits/slots.ts';
import { decideCheck, type AuthorizationServiceDeps } from '../../extproc/adapters/envoy/authorization-service.ts';
import { toCheckRequest } from '../../extproc/adapters/envoy/authz-client.ts';
import { fromCheckRequest, type CheckRequestParse } from '../../extproc/adapters/envoy/check-request.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { benchSnapshot } from '../config.ts';
import type { BenchSettings } from '../harness.ts';
import type { CaseResult, Row } from '../report.ts';
import { percentileSorted, sortedCopy, spread } from '../stats.ts';

const CASE = '7 admission';

interface RoundFigures {
  plainP50: number[];
  plainP99: number[];
  limitedP50: number[];
  limitedP99: number[];
  addedP50: number[];
  addedP99: number[];
  edgeP50: number[];
  edgeP99: number[];
}

const us = (start: bigint) => Number(process.hrtime.bigint() - start) / 1000;

function p(samples: number[], q: number): number {
  return percentileSorted(sortedCopy(samples), q);
}

async function checkSamples(parsed: CheckRequestParse, deps: AuthorizationServiceDeps, slots: SlotTable | undefined, n: number): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const a = await decideCheck(parsed, deps);
    // The ext_proc stream's end, as ext-proc-service.ts does it.
    if (slots && a.extra?.slot !== undefined) slots.release(a.extra.slot, 'stream');
    out[i] = us(t);
    if (a.decision.kind !== 'allow') throw new Error(`bench Check was denied: ${a.decision.code}`);
  }
  return out;
}

function edgeSamples(ledger: ReturnType<typeof createAdmissionLedger>, allow: Allow, snapshot: Snapshot, n: number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const a = admitDecision(ledger, allow, snapshot);
    if (a.kind !== 'granted') throw new Error('bench admission was refused');
    a.lease.release();
    out[i] = us(t);
  }
  return out;
}

export async function admissionCost(s: Pick<BenchSettings, 'quick' | 'rounds' | 'log'>): Promise<CaseResult> {
  const perRound = s.quick ? 10_000 : 40_000;
  const snapshot = await benchSnapshot('http://127.0.0.1:1');
  const source = new StaticSnapshotSource(snapshot);
  const token = await signDevToken(snapshot, { user: 'alice', teams: ['voice'], ttlSeconds: 3600 });
  const body = new TextEncoder().encode('{"text":"hi","voice_id":"magnus"}');
  const parsed = fromCheckRequest(
    toCheckRequest({
      method: 'POST',
      path: '/smallest/waves/v1/lightning-v3.1/get_speech',
      headers: { ':method': 'POST', ':path': '/smallest/waves/v1/lightning-v3.1/get_speech', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
      requestId: 'bench',
    }),
  );
  const logger = pino({ level: 'silent' });
  const authorizer = createAuthorizer(source);
  const ledger = createAdmissionLedger();
  const slots = new SlotTable();
  const plain: AuthorizationServiceDeps = { authorizer, logger, snapshot: () => source.current() };
  const limited: AuthorizationServiceDeps = { ...plain, limits: { ledger, slots } };
  const first = await decideCheck(parsed, plain);
  if (first.decision.kind !== 'allow') throw new Error(`bench Check was denied: ${first.decision.code}`);
  const allow = first.decision;

  // Warm-up: JIT and the verification cache on every path.
  await checkSamples(parsed, plain, undefined, perRound);
  await checkSamples(parsed, limited, slots, perRound);
  edgeSamples(ledger, allow, snapshot, perRound);

  const f: RoundFigures = { plainP50: [], plainP99: [], limitedP50: [], limitedP99: [], addedP50: [], addedP99: [], edgeP50: [], edgeP99: [] };
  for (let r = 0; r < s.rounds; r++) {
    // Alternate which path goes first, so drift within a round does not favour one.
    const a = r % 2 === 0 ? await checkSamples(parsed, plain, undefined, perRound) : undefined;
    const b = await checkSamples(parsed, limited, slots, perRound);
    const c = a ?? (await checkSamples(parsed, plain, undefined, perRound));
    const e = edgeSamples(ledger, allow, snapshot, perRound);
    f.plainP50.push(p(c, 50));
    f.plainP99.push(p(c, 99));
    f.limitedP50.push(p(b, 50));
    f.limitedP99.push(p(b, 99));
    f.addedP50.push(p(b, 50) - p(c, 50));
    f.addedP99.push(p(b, 99) - p(c, 99));
    f.edgeP50.push(p(e, 50));
    f.edgeP99.push(p(e, 99));
  }
  if (slots.held !== 0 || ledger.inUse('account', allow.metadata.account ?? '', 'tts_units') !== 0) throw new Error('units left held after the bench');
  s.log(`  Check p99 ${spread(f.plainP99).median.toFixed(1)} µs without limits, ${spread(f.limitedP99).median.toFixed(1)} µs with (added p99 ${spread(f.addedP99).median.toFixed(1)} µs); edge admission p99 ${spread(f.edgeP99).median.toFixed(2)} µs`);
  const goal = [{ cmp: 'le' as const, value: 50, of: 'added' as const, text: 'added p99 < 50 µs' }];
  const rows: Row[] = [
    { case: CASE, metric: 'Check p50', path: 'no limits', unit: 'µs', value: spread(f.plainP50) },
    { case: CASE, metric: 'Check p50', path: 'acquire + release', unit: 'µs', value: spread(f.limitedP50), baseline: spread(f.plainP50).median, added: spread(f.addedP50) },
    { case: CASE, metric: 'Check p99', path: 'no limits', unit: 'µs', value: spread(f.plainP99) },
    { case: CASE, metric: 'Check p99', path: 'acquire + release', unit: 'µs', value: spread(f.limitedP99), baseline: spread(f.plainP99).median, added: spread(f.addedP99), goals: goal },
    { case: CASE, metric: 'edge admission p50', path: 'acquire + release', unit: 'µs', value: spread(f.edgeP50) },
    { case: CASE, metric: 'edge admission p99', path: 'acquire + release', unit: 'µs', value: spread(f.edgeP99), goals: [{ cmp: 'le', value: 50, of: 'value', text: '< 50 µs' }] },
  ];
  return {
    id: 7,
    title: 'Admission with limits',
    rows,
    notes: [
      `In this process, no sockets: decideCheck (token cached after warm-up) with and without the ledger, ${perRound.toLocaleString('en-US')} calls per path per round, one at a time, ${s.rounds} rounds; "added" is the round's p with limits minus without. Local grant (whole account): no admission made a ledger round trip (share 0 %).`,
    ],
    raw: f,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const result = await admissionCost({ quick, rounds: quick ? 3 : 5, log: (m) => console.log(m) });
  console.log(`cores ${availableParallelism()}`);
  for (const r of result.rows) {
    const v = r.value;
    const added = r.added ? `  added ${r.added.median.toFixed(2)} (${r.added.min.toFixed(2)} … ${r.added.max.toFixed(2)})` : '';
    console.log(`${r.metric.padEnd(20)} ${r.path.padEnd(18)} ${v.median.toFixed(2)} µs (${v.min.toFixed(2)} … ${v.max.toFixed(2)})${added}`);
  }
}
