/**
 * `npm run bench [-- --quick] [--only 1,3] [--cpu-prof]` — measures what the gateway adds against a
 * direct baseline in the same run, prints a markdown table and writes it, with the raw per-round
 * figures, to bench/results/ (`latest.*` for a full run, `latest-quick.*` for --quick, `partial.*`
 * for --only). Servers run in pinned child processes (bench/processes.ts); this process is the load
 * generator. `--cpu-prof` starts every edge and extproc with node's --cpu-prof, profiles written to
 * bench/results/profiles/ (read them with `node bin/run-ts.js bench/profile-top.ts FILE`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { restLatency } from './cases/rest-latency.ts';
import { restThroughput } from './cases/rest-throughput.ts';
import { checkThroughput } from './cases/check-throughput.ts';
import { jwtVerify } from './cases/jwt-verify.ts';
import { sseLatency } from './cases/sse.ts';
import { websocketRelay } from './cases/websocket.ts';
import { admissionCost } from './cases/admission.ts';
import { REPO_ROOT } from './config.ts';
import { releaseSharedTopology, type BenchSettings } from './harness.ts';
import { machineBusySeconds, ownCpuSeconds, pinSelf, planCpus, stopAll } from './processes.ts';
import { peerStatuses, portkeyAudioProbe, preparePeers } from './peers.ts';
import { renderNotes, renderTable, rowGoals, type CaseResult } from './report.ts';

const CASES: ReadonlyArray<readonly [number, string, (s: BenchSettings) => Promise<CaseResult>]> = [
  [1, 'REST added latency (1 in flight)', restLatency],
  [2, 'REST throughput (64 connections)', restThroughput],
  [3, 'Decision service: Check/s over gRPC', checkThroughput],
  [4, 'JWT verification', jwtVerify],
  [5, 'SSE time to first/last event', sseLatency],
  [6, 'WebSocket relay and idle memory', websocketRelay],
  [7, 'Admission with limits: edge REST, gRPC Check, ledger round trips', admissionCost],
];

/** Cases that run on (or borrow from) the servers of cases 1–2. */
const SHARING_CASES = [1, 2, 3];

const USAGE = 'usage: npm run bench [-- --quick] [--only 1,2,…] [--rounds N] [--cpu-prof]';

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        rounds: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const only = values.only?.split(',').map(Number);
  const rounds = values.rounds ? Number(values.rounds) : values.quick ? 3 : 5;
  if ((only && only.some((n) => !CASES.some(([id]) => id === n))) || !Number.isInteger(rounds) || rounds < 1) {
    process.stderr.write(`bad arguments\n${USAGE}\n`);
    return 2;
  }

  const cpu = planCpus();
  if (cpu.pinned) pinSelf(cpu.loadCpu);
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  const profileDir = join(resultsDir, 'profiles');
  if (values['cpu-prof']) mkdirSync(profileDir, { recursive: true });
  const settings: BenchSettings = {
    quick: values.quick,
    rounds,
    cpu,
    edgeNodeFlags: values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    log: (m) => process.stderr.write(`${m}\n`),
  };
  const started = Date.now();
  settings.log(`voicegate bench (${values.quick ? 'quick' : 'full'}, ${rounds} rounds): ${cpu.note}`);
  // Before any case: installing a peer must not land inside a case's timing or CPU accounting.
  const peerCases = [1, 2, 5, 6];
  if (!only || only.some((n) => peerCases.includes(n))) {
    settings.log('peers:');
    await preparePeers({ cpu }, settings.log);
  }
  const peersSeconds = (Date.now() - started) / 1000;

  const results: CaseResult[] = [];
  const foreign: Record<number, number> = {};
  const walls: Record<number, number> = {};
  const selected = CASES.filter(([id]) => !only || only.includes(id));
  for (const [k, [id, name, run]] of selected.entries()) {
    const t0 = Date.now();
    const busy0 = machineBusySeconds();
    const own0 = ownCpuSeconds();
    settings.log(`case ${id}: ${name}…`);
    const result = await run(settings);
    const wall = (Date.now() - t0) / 1000;
    // Other work on the machine (another test run, a build) distorts every figure of the case.
    const others = Math.max(0, machineBusySeconds() - busy0 - (ownCpuSeconds() - own0)) / wall;
    foreign[id] = others;
    const warn = others > 0.15 ? ' — figures of this case are disturbed; rerun on a quiet machine' : '';
    results.push({ ...result, notes: [...result.notes, `Other processes used ${others.toFixed(2)} cores on average during this case${warn}.`] });
    walls[id] = wall;
    settings.log(`case ${id} done in ${wall.toFixed(1)} s (other processes: ${others.toFixed(2)} cores)`);
    // Cases 1–3 share one set of servers (bench/harness.ts); stop it once no later case wants it.
    const next = selected[k + 1]?.[0];
    if (next === undefined || !SHARING_CASES.includes(next)) await releaseSharedTopology();
  }
  const seconds = (Date.now() - started) / 1000;
  const wallLine = `Wall time: ${seconds.toFixed(0)} s — peers ${peersSeconds.toFixed(1)} s, ${Object.entries(walls).map(([id, w]) => `case ${id} ${w.toFixed(1)} s`).join(', ')}.`;

  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const met = results.flatMap((c) => c.rows).flatMap(rowGoals).map((g) => g.met).filter((m) => m !== undefined);
  const peers = peerStatuses();
  const audio = portkeyAudioProbe();
  const md = [
    `## voicegate benchmark — ${new Date().toISOString()}`,
    '',
    `\`${command}\` · Node ${process.version} · ${cpu.cores} × ${cpuModel} · ${values.quick ? 'quick' : 'full'} run, ${rounds} rounds, ${seconds.toFixed(0)} s · goals met: ${met.filter(Boolean).length}/${met.length}`,
    '',
    wallLine,
    '',
    `Pinning: ${cpu.note}. Other processes on the machine: ${Object.entries(foreign).map(([id, c]) => `case ${id} ${c.toFixed(2)}`).join(', ')} cores on average.`,
    '',
    `Peers (same upstream, load generator and pinning): ${peers.map((p) => `**${p.name}** ${p.available ? p.detail : `skipped — ${p.detail}`}`).join('; ')}.${audio ? ` Portkey and audio: ${audio}.` : ''}`,
    '',
    renderTable(results),
    '',
    renderNotes(results),
    '',
  ].join('\n');
  const json = {
    date: new Date().toISOString(),
    command,
    node: process.version,
    cpu: { model: cpuModel, ...cpu },
    mode: values.quick ? 'quick' : 'full',
    rounds,
    seconds,
    caseSeconds: walls,
    otherProcessesCores: foreign,
    peers,
    ...(audio ? { portkeyAudioProbe: audio } : {}),
    cases: results,
  };
  const base = only ? 'partial' : values.quick ? 'latest-quick' : 'latest';
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, `${base}.md`), md);
  writeFileSync(join(resultsDir, `${base}.json`), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`${md}\n`);
  settings.log(`written: bench/results/${base}.md, bench/results/${base}.json`);
  settings.log(wallLine);
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
} finally {
  await stopAll();
}
process.exit(code);
