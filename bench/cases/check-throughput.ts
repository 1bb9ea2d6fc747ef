/**
 * Case 3 — the decision service alone: `envoy.service.auth.v3.Authorization/Check` over gRPC
 * against a pinned `voicegate extproc` child, from a closed loop of concurrent calls on the load
 * core. With a cached token (every call carries the same JWT) and with a fresh token on every call
 * (pre-signed before timing, so each call pays a signature verification).
 */
import { createGrpcAuthorizer } from '../../extproc/adapters/envoy/authz-client.ts';
import type { CheckInput } from '../../extproc/core/decision/types.ts';
import { signDevToken } from '../../extproc/main/commands/token.ts';
import { SMALL_TTS_BODY } from '../clients.ts';
import { benchSnapshot } from '../config.ts';
import { currentSharedTopology, gatewayToken, type BenchSettings } from '../harness.ts';
import { startServer } from '../processes.ts';
import type { CaseResult, Row } from '../report.ts';
import { ratio, spread, summarizeLatencies } from '../stats.ts';

const CASE = '3 Check over gRPC';
const CONCURRENCY = 32;
const PATH = '/smallest/waves/v1/lightning-v3.1/get_speech';
const BODY = new TextEncoder().encode(SMALL_TTS_BODY);

/** What the edge (or Envoy) sends for the case-1 request (case 7 sends it too). */
export function checkInput(token: string, i: number): CheckInput {
  const requestId = `bench-${i}`;
  return {
    method: 'POST',
    path: PATH,
    host: '127.0.0.1:8080',
    headers: {
      ':method': 'POST',
      ':path': PATH,
      ':scheme': 'http',
      ':authority': '127.0.0.1:8080',
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'content-length': String(BODY.length),
      'x-request-id': requestId,
      'x-envoy-auth-partial-body': 'false',
    },
    body: BODY,
    requestId,
  };
}

interface RoundFigures {
  readonly perSecond: number;
  readonly perServerCpuSecond: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly denied: number;
}

async function closedLoop(
  client: ReturnType<typeof createGrpcAuthorizer>,
  tokens: (i: number) => string,
  calls: number,
  serverCpu: () => number,
): Promise<RoundFigures> {
  const lat = new Float64Array(calls);
  let next = 0;
  let denied = 0;
  const cpu0 = serverCpu();
  const start = process.hrtime.bigint();
  const worker = async () => {
    for (let i = next++; i < calls; i = next++) {
      const t0 = process.hrtime.bigint();
      const d = await client.check(checkInput(tokens(i), i));
      lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
      if (d.kind !== 'allow') denied++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = serverCpu() - cpu0;
  const s = summarizeLatencies(Array.from(lat));
  return { perSecond: calls / seconds, perServerCpuSecond: calls / cpu, p50Us: s.p50, p99Us: s.p99, denied };
}

export async function checkThroughput(s: BenchSettings): Promise<CaseResult> {
  const cachedCalls = s.quick ? 6_000 : 40_000;
  const freshCalls = s.quick ? 2_000 : 6_000;
  const token = await gatewayToken();
  const snapshot = await benchSnapshot('http://127.0.0.1:1');
  s.log(`  pre-signing ${freshCalls * (s.rounds + 1)} tokens…`);
  const fresh: string[] = [];
  // Signed 64 at a time: WebCrypto's work overlaps the JS around it (≈ 20 % faster than one by one).
  for (let i = 0; i < freshCalls * (s.rounds + 1); i += 64) {
    const n = Math.min(64, freshCalls * (s.rounds + 1) - i);
    fresh.push(...(await Promise.all(Array.from({ length: n }, (_, k) => signDevToken(snapshot, { user: `bench-user-${i + k}`, teams: ['voice'], ttlSeconds: 3600 })))));
  }
  // The extproc of cases 1–2 when they ran just before (same process, its Check path already warm
  // from the gRPC edge's traffic; Check never reaches the upstream), else one of its own. Under
  // --cpu-prof the decision service is what this case profiles.
  const borrowed = (await currentSharedTopology())?.extproc;
  const extproc =
    borrowed ??
    (await startServer('extproc', ['--upstream', 'http://127.0.0.1:1'], {
      ...(s.cpu.pinned ? { cpu: s.cpu.sutCpu } : {}),
      nodeFlags: s.edgeNodeFlags,
    }));
  // The edge's own client: same proto encoding, a generous deadline so overload shows as latency.
  const client = createGrpcAuthorizer(`127.0.0.1:${extproc.port}`, { timeoutMs: 30_000 });
  const cpu = () => extproc.cpuSeconds();
  try {
    await closedLoop(client, () => token, s.quick ? 2_000 : 5_000, cpu);
    await closedLoop(client, (i) => fresh[i]!, freshCalls, cpu);
    const cached: RoundFigures[] = [];
    const uncached: RoundFigures[] = [];
    for (let r = 0; r < s.rounds; r++) {
      cached.push(await closedLoop(client, () => token, cachedCalls, cpu));
      const offset = freshCalls * (r + 1);
      uncached.push(await closedLoop(client, (i) => fresh[offset + i]!, freshCalls, cpu));
      s.log(`  round ${r + 1}/${s.rounds}: cached ${cached.at(-1)!.perSecond.toFixed(0)}/s, fresh ${uncached.at(-1)!.perSecond.toFixed(0)}/s`);
    }
    const rows: Row[] = [];
    const cachedRate = spread(cached.map((x) => x.perSecond)).median;
    for (const [path, f] of [['cached token', cached], ['fresh token', uncached]] as const) {
      const isCached = path === 'cached token';
      rows.push({ case: CASE, metric: 'Check/s (client-bound)', path, unit: '/s', value: spread(f.map((x) => x.perSecond)), ...(isCached ? {} : { baseline: cachedRate }) });
      rows.push({
        case: CASE,
        metric: 'Check per extproc CPU-second',
        path,
        unit: '/s',
        value: spread(f.map((x) => x.perServerCpuSecond)),
        ...(isCached ? { goals: [{ cmp: 'ge', value: 20_000, of: 'value', text: '≥ 20,000 Check/s per core' }] as const } : {}),
      });
      rows.push({ case: CASE, metric: `p50 at ${CONCURRENCY} in flight`, path, unit: 'µs', value: spread(f.map((x) => x.p50Us)) });
      rows.push({ case: CASE, metric: `p99 at ${CONCURRENCY} in flight`, path, unit: 'µs', value: spread(f.map((x) => x.p99Us)) });
    }
    const denied = [...cached, ...uncached].reduce((n, x) => n + x.denied, 0);
    return {
      id: 3,
      title: 'Check over gRPC',
      rows,
      notes: [
        `${CONCURRENCY} calls in flight from one grpc-js client (the edge's own, extproc/envoy/authz-client.ts) on the load core; ${cachedCalls} calls per cached round, ${freshCalls} per fresh round (each with its own pre-signed ES256 token), ${s.rounds} rounds after a warm-up. The CheckRequest is the one Envoy sends for the case-1 request (headers and a 56-byte body).`,
        '"client-bound": calls/s seen by the client, limited by the single grpc-js client core as much as by the server; "per extproc CPU-second" divides completed calls by the extproc process\'s utime+stime — the goal is judged on this. The "vs direct" column of the fresh row compares with the cached row.',
        denied ? `${denied} calls were not allowed.` : 'Every call was allowed.',
        `fresh/cached: ${ratio(spread(uncached.map((x) => x.perServerCpuSecond)).median, spread(cached.map((x) => x.perServerCpuSecond)).median).toFixed(2)}× per extproc CPU-second.`,
      ],
      raw: { cached, fresh: uncached },
    };
  } finally {
    client.close();
    if (!borrowed) await extproc.stop();
  }
}
