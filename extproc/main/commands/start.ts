/**
 * `voicegate start` — what `npm start` runs: the simulator of api.smallest.ai (when the config's
 * upstream is a loopback address and the development wiring is present), the decision service
 * over gRPC, the embedded edge and a side port with metrics and usage, all in one process. Prints
 * a token and commands that work as written; stops cleanly on Ctrl-C.
 */
import { createAuthorizer } from '../../core/decision/authorizer.ts';
import { StaticSnapshotSource, type Snapshot } from '../../core/config/snapshot.ts';
import { composeObservers } from '../../core/exchange/compose-observers.ts';
import { createAuthzMetrics } from '../../adapters/prometheus/authz-metrics.ts';
import { createExchangeMetrics } from '../../adapters/prometheus/exchange-metrics.ts';
import { usageMetrics } from '../../adapters/prometheus/usage-metrics.ts';
import { createUsageHttpHandler } from '../../adapters/postgres/usage-query.ts';
import { closing, defineCommand, loadConfig, report, serve, type RunContext } from '../command.ts';
import { poolComponent } from '../components/connections.ts';
import { edgeComponent, grpcComponent, serverTlsFromFlags, sidePortComponent } from '../components/listeners.ts';
import { telemetryComponent } from '../components/telemetry.ts';
import { usageComponent } from '../components/usage.ts';
import { envoyUsageServices } from '../envoy-usage-services.ts';
import type { UpstreamSimulatorOptions } from '../extensions.ts';
import { listenError, type Component } from '../lifecycle.ts';
import { limitsComponent, resolveLimitsMode } from '../components/limits.ts';
import { createLogger } from '../logger.ts';
import { START_OPTIONS } from '../options.ts';
import { reloadComponent } from '../reload.ts';
import { devIssuer, signDevToken } from './token.ts';

/** The loopback upstream the bundled simulator should serve, if the config points at one. */
export function simulatorTarget(snapshot: Snapshot): { host: string; port: number } | undefined {
  const smallest = snapshot.providers.get('smallest');
  if (!smallest) return undefined;
  const url = new URL(smallest.upstream);
  if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return undefined;
  return { host: url.hostname === '[::1]' ? '::1' : url.hostname, port: Number(url.port || 80) };
}

interface SimulatorComponent extends Component {
  readonly url: string | undefined;
  /** Lets the simulator accept the keys of accounts that appeared after start. */
  addAccounts(accounts: Array<{ key: string; units: number }>): void;
}

/** The simulator's view of a snapshot: the keys of the accounts of the provider it imitates. */
function simulatorAccounts(snapshot: Snapshot): Array<{ key: string; units: number }> {
  return [...snapshot.accounts.values()].filter((a) => a.provider === 'smallest' && a.token !== '').map((a) => ({ key: a.token, units: a.concurrency }));
}

function simulatorComponent(ctx: RunContext, opts: UpstreamSimulatorOptions): SimulatorComponent | undefined {
  const port = ctx.ext.upstreamSimulator;
  if (!port) return undefined;
  let handle: Awaited<ReturnType<NonNullable<RunContext["ext"]["upstreamSimulator"]>["start"]>> | undefined;
  return {
    name: 'simulator',
    get url() {
      return handle?.url;
    },
    addAccounts(accounts) {
      handle?.addAccounts(accounts);
    },
    async start() {
      handle = await port.start(opts).catch((err: unknown) => Promise.reject(listenError(err, opts.port, 'simulator')));
    },
    drain() {},
    async close() {
      await handle?.close();
    },
  };
}

export const startCommand = defineCommand('simulator + decision service + edge in one process (what `npm start` runs)', START_OPTIONS, async (o, ctx) => {
  const tls = serverTlsFromFlags(o);
  if (typeof tls === 'string') {
    report(ctx, tls);
    return 2;
  }
  const snapshot = await loadConfig(ctx, o.config);
  if (!snapshot) return 1;
  const source = new StaticSnapshotSource(snapshot);
  const logger = createLogger({ name: 'voicegate', level: ctx.env['LOG_LEVEL'] });
  const limitsMode = resolveLimitsMode(o.limits, o.nats);
  if (!limitsMode) {
    report(ctx, '--limits cluster needs NATS (--nats or NATS_URL): the grant ledger is a NATS KV bucket');
    return 2;
  }
  const limits = limitsComponent({ mode: limitsMode, ...(o.nats ? { natsUrl: o.nats } : {}), bucket: o.grantBucket, snapshot: () => source.current(), logger });
  const target = o.simulator === 'auto' ? simulatorTarget(snapshot) : undefined;
  const simulator = target ? simulatorComponent(ctx, { ...target, profile: o.profile, accounts: simulatorAccounts(snapshot) }) : undefined;
  // An account added later (a reload, the control plane) has a key the simulator must accept too.
  if (simulator) source.onSwap((next) => simulator.addAccounts(simulatorAccounts(next)));
  if (target && !simulator) {
    report(ctx, `the upstream ${snapshot.providers.get('smallest')?.upstream} is loopback, but the bundled simulator is not installed (dev/wiring.ts); start one yourself and pass --simulator off`);
    return 1;
  }
  const metrics = createAuthzMetrics();
  const usage = usageComponent({
    ...(o.nats ? { natsUrl: o.nats } : {}),
    ...(o.nats && o.database ? { databaseUrl: o.database } : {}),
    spoolDir: o.spoolDir,
    spoolMaxBytes: o.spoolMaxBytes,
    spanFileMaxBytes: o.spanFileMaxBytes,
    spanFileKeep: o.spanFileKeep,
    stream: o.stream,
    subjectPrefix: o.subjectPrefix,
    durable: o.durable,
    logger,
    metrics: usageMetrics(metrics.registry),
  });
  const authorizer = createAuthorizer(source);
  // On the default 127.0.0.1 plaintext is allowed (nothing off the machine reaches it); any other
  // --host needs --tls-* or --insecure, as for `voicegate extproc`.
  const grpc = grpcComponent({ host: o.host, port: o.grpcPort, ...(tls ? { tls } : {}), insecure: o.insecure, authorizer, source, logger, metrics, extraServices: envoyUsageServices(usage.sink, source) }, { drainTimeoutMs: o.drainTimeout });
  // Lazy: `start` serves before PostgreSQL is up; /usage answers once it is.
  const pool = o.database ? poolComponent(o.database, 2).pool : undefined;
  const side = sidePortComponent({
    host: o.host,
    port: o.httpPort,
    registry: metrics.registry,
    ready: () => source.current() !== undefined,
    mounts: pool ? [createUsageHttpHandler(pool, ctx.env['VOICEGATE_ADMIN_TOKEN'] ? { adminToken: ctx.env['VOICEGATE_ADMIN_TOKEN'] } : {})] : [],
  });
  const observe = composeObservers(usage.observe, createExchangeMetrics(metrics.registry));
  const edge = edgeComponent({
    host: o.host,
    port: o.port,
    headersTimeoutMs: o.headersTimeout,
    decisionBodyTimeoutMs: o.decisionBodyTimeout,
    maxConnections: o.maxConnections,
    wsMaxPayloadBytes: o.maxWsPayload,
    maxSessionMs: o.maxSession,
    sessionTokenGraceMs: o.sessionTokenGrace,
    source,
    authorizer,
    logger,
    limits: limits.ledger,
    ...(observe ? { observe } : {}),
  }, { drainTimeoutMs: o.drainTimeout });
  const components: Component[] = [
    telemetryComponent('voicegate'),
    ...(simulator ? [simulator] : []),
    usage,
    grpc,
    ...(pool ? [closing('PostgreSQL pool', () => pool.end())] : []),
    side,
    limits,
    edge,
    reloadComponent(source, o.config, logger),
  ];
  const usageMode = o.nats ? (o.database ? 'nats+postgres' : 'nats') : `file ${o.spoolDir}/spans.jsonl`;
  return serve(ctx, components, o.drainDelay, async () => {
    ctx.stdout(await banner({ snapshot, configPath: o.config, edgeUrl: edge.url, grpcHost: o.host, grpcTls: Boolean(tls), grpcPort: grpc.port, httpPort: side.port, simulator: simulator?.url, usage: usageMode }));
  });
});

/** `word` as one POSIX shell word: bare when it is plain, single-quoted otherwise. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

async function banner(p: { snapshot: Snapshot; configPath: string; edgeUrl: string; grpcHost: string; grpcTls: boolean; grpcPort: number; httpPort: number; simulator: string | undefined; usage: string }): Promise<string> {
  const lines = [
    '',
    'voicegate is running',
    `  gateway (edge)     ${p.edgeUrl}`,
    `  decision (gRPC)    ${p.grpcHost.includes(':') ? `[${p.grpcHost}]` : p.grpcHost}:${p.grpcPort}${p.grpcTls ? ' (mutual TLS)' : ''}   envoy.service.auth.v3.Authorization, ext_proc, access logs, health`,
    `  metrics & usage    http://127.0.0.1:${p.httpPort}/metrics`,
    `  upstream           ${p.simulator ? `${p.simulator} (bundled simulator of api.smallest.ai)` : p.snapshot.providers.get('smallest')?.upstream ?? '-'}`,
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
