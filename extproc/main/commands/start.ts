/**
 * `voicegate start [--config examples/voicegate.yaml]` — what `npm start` runs: the simulator of
 * api.smallest.ai (when the config's upstream is a loopback address), the decision service over
 * gRPC, the embedded edge and a side port with metrics and usage, all in one process. Prints a
 * token and commands that work as written; stops cleanly on Ctrl-C.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { loadSnapshotFromFile } from '../../adapters/files/config-file.ts';
import { reloadOnSighup } from '../reload.ts';
import { StaticSnapshotSource, type Snapshot } from '../../core/config/snapshot.ts';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import { startEdge } from '../../adapters/edge/server.ts';
import { createExchangeMetrics } from '../../adapters/prometheus/exchange-metrics.ts';
import { startExtprocServer } from '../../adapters/envoy/server.ts';
import { startSidePort } from '../../adapters/http/side-port.ts';
import { createLogger } from '../logger.ts';
import { createAuthzMetrics } from '../../adapters/prometheus/authz-metrics.ts';
import { createUsagePipeline, spanStreamFromEnv } from './usage.ts';
import { createUsageHttpHandler } from '../../adapters/postgres/usage-query.ts';
import { startSimulator, type SimulatorHandle } from '../../../simulator/server.ts';
import { envoyUsageServices } from './extproc.ts';
import { waitForShutdown } from '../signals.ts';
import { devIssuer, signDevToken } from './token.ts';

const USAGE =
  'usage: voicegate start [--config FILE] [--port 8080] [--grpc-port 50051] [--http-port 8081] [--simulator auto|off] [--profile realistic|instant]';

/** The loopback upstream the bundled simulator should serve, if the config points at one. */
export function simulatorTarget(snapshot: Snapshot): { host: string; port: number } | undefined {
  const smallest = snapshot.providers.get('smallest');
  if (!smallest) return undefined;
  const url = new URL(smallest.upstream);
  if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return undefined;
  return { host: url.hostname === '[::1]' ? '::1' : url.hostname, port: Number(url.port || 80) };
}

export async function startCommand(args: string[], signal?: AbortSignal, out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        config: { type: 'string', default: 'examples/voicegate.yaml' },
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8080' },
        'grpc-port': { type: 'string', default: '50051' },
        'http-port': { type: 'string', default: '8081' },
        simulator: { type: 'string', default: 'auto' },
        profile: { type: 'string', default: 'realistic' },
        'spool-dir': { type: 'string', default: '.voicegate' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const ports = [values.port, values['grpc-port'], values['http-port']].map(Number);
  if (ports.some((p) => !Number.isInteger(p) || p < 0 || p > 65535) || !['auto', 'off'].includes(values.simulator) || !['realistic', 'instant'].includes(values.profile)) {
    process.stderr.write(`bad arguments\n${USAGE}\n`);
    return 2;
  }
  const [edgePort, grpcPort, httpPort] = ports as [number, number, number];
  const logger = createLogger({ name: 'voicegate' });
  let snapshot: Snapshot;
  try {
    snapshot = await loadSnapshotFromFile(values.config);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  const source = new StaticSnapshotSource(snapshot);
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const c of closers.reverse()) await c().catch((err: unknown) => logger.warn({ err: String(err) }, 'shutdown step failed'));
  };
  try {
    let simulator: SimulatorHandle | undefined;
    const target = values.simulator === 'auto' ? simulatorTarget(snapshot) : undefined;
    if (target) {
      const accounts = [...snapshot.accounts.values()].filter((a) => a.provider === 'smallest').map((a) => ({ key: a.token, units: a.concurrency }));
      simulator = await startSimulator({ host: target.host, port: target.port, profile: values.profile as 'realistic' | 'instant', accounts });
      closers.push(() => simulator!.close());
    }
    const metrics = createAuthzMetrics();
    const natsUrl = process.env['NATS_URL'];
    const databaseUrl = process.env['DATABASE_URL'];
    const usage = await createUsagePipeline({
      ...(natsUrl ? { natsUrl } : {}),
      ...(natsUrl && databaseUrl ? { databaseUrl } : {}),
      spoolDir: values['spool-dir'],
      ...spanStreamFromEnv(),
      logger,
      snapshot: () => source.current(),
    });
    closers.push(() => usage.close());
    const authorizer = createAuthorizer(source);
    const grpcServer = await startExtprocServer({
      host: values.host,
      port: grpcPort,
      authorizer,
      source,
      logger,
      metrics,
      extraServices: envoyUsageServices(usage.sink, source),
    });
    closers.push(() => grpcServer.close(2_000));
    const pool = databaseUrl ? new pg.Pool({ connectionString: databaseUrl, max: 2 }) : undefined;
    if (pool) closers.push(() => pool.end());
    const side = await startSidePort({
      host: values.host,
      port: httpPort,
      registry: metrics.registry,
      ready: () => source.current() !== undefined,
      mounts: pool ? [createUsageHttpHandler(pool)] : [],
    });
    closers.push(() => side.close());
    const observe = composeObservers(usage.observe, createExchangeMetrics(metrics.registry));
    const edge = await startEdge({ host: values.host, port: edgePort, source, authorizer, logger, ...(observe ? { observe } : {}) });
    closers.push(() => edge.close());
    const stopReload = reloadOnSighup(source, values.config, logger);
    closers.push(async () => stopReload());

    out(await banner({ snapshot, configPath: values.config, edgeUrl: edge.url, grpcPort: grpcServer.port, httpPort: side.port, simulator, usage: natsUrl ? (databaseUrl ? 'nats+postgres' : 'nats') : `file ${values['spool-dir']}/spans.jsonl` }));
    const why = await waitForShutdown(signal);
    logger.info({ why }, 'stopping');
    await closeAll();
    return 0;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`voicegate start failed: ${e.code === 'EADDRINUSE' ? `port already in use (${e.message})` : e.message}\n`);
    await closeAll();
    return 1;
  }
}

/** `word` as one POSIX shell word: bare when it is plain, single-quoted otherwise. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

async function banner(p: { snapshot: Snapshot; configPath: string; edgeUrl: string; grpcPort: number; httpPort: number; simulator: SimulatorHandle | undefined; usage: string }): Promise<string> {
  const lines = [
    '',
    'voicegate is running',
    `  gateway (edge)     ${p.edgeUrl}`,
    `  decision (gRPC)    127.0.0.1:${p.grpcPort}   envoy.service.auth.v3.Authorization, ext_proc, access logs, health`,
    `  metrics & usage    http://127.0.0.1:${p.httpPort}/metrics`,
    `  upstream           ${p.simulator ? `${p.simulator.url} (bundled simulator of api.smallest.ai)` : p.snapshot.providers.get('smallest')?.upstream ?? '-'}`,
    `  usage spans        ${p.usage}`,
    '',
  ];
  if (devIssuer(p.snapshot)) {
    const token = await signDevToken(p.snapshot, { user: 'alice', teams: ['voice'], ttlSeconds: 12 * 3600 });
    const g = p.edgeUrl;
    const ws = g.replace(/^http/, 'ws');
    lines.push(
      'A development token for alice (team voice), valid 12 hours:',
      `  export VG_TOKEN=${token}`,
      '',
      'Text to speech (WAV file):',
      `  curl -sS -o hello.wav -H "Authorization: Bearer $VG_TOKEN" -H 'Content-Type: application/json' \\`,
      `    -d '{"text":"Hello from voicegate","voice_id":"magnus","output_format":"wav"}' ${g}/smallest/waves/v1/lightning-v3.1/get_speech`,
      '',
      'Streaming text to speech (Server-Sent Events):',
      `  curl -N -H "Authorization: Bearer $VG_TOKEN" -H 'Content-Type: application/json' \\`,
      `    -d '{"text":"Streaming through the gateway","voice_id":"magnus"}' ${g}/smallest/waves/v1/lightning-v3.1/stream`,
      '',
      'WebSocket text to speech (token in the query, as browsers send it):',
      `  node -e "const w=new (require('ws'))('${ws}/smallest/waves/v1/tts/live?token='+process.env.VG_TOKEN);w.on('open',()=>w.send(JSON.stringify({text:'Hi there',voice_id:'magnus',complete_backoff_ms:200})));w.on('message',m=>{const f=JSON.parse(m);console.log(f.status);if(f.status==='complete')w.close()})"`,
      '',
      'A token for another user (bob may use pulse only; mallory nothing):',
      `  node bin/voicegate.js token --config ${shellWord(p.configPath)} --user bob`,
      '',
    );
  }
  lines.push('Press Ctrl-C to stop.', '');
  return lines.join('\n');
}
