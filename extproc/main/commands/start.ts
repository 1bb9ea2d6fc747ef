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
import { openEmbeddedControl, type EmbeddedControl, type PodFeed } from './start-control.ts';
import { loadStartConfigFile, type StartConfigFile } from '../../adapters/files/start-config.ts';
import type { Parsed } from '../flags.ts';
import type { Logger } from '../logger.ts';

type StartFlags = Parsed<typeof START_OPTIONS>;

/** The loopback upstream the bundled simulator should serve, if the config points at one. */
export function simulatorTarget(snapshot: Snapshot): { host: string; port: number } | undefined {
  return simulatorTargetOf(snapshot.providers.get('smallest')?.upstream);
}

/** The same from the provider's upstream URL (the file's, before any snapshot exists). */
export function simulatorTargetOf(upstream: string | undefined): { host: string; port: number } | undefined {
  if (upstream === undefined) return undefined;
  const url = new URL(upstream);
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
  const logger = createLogger({ name: 'voicegate', level: ctx.env['LOG_LEVEL'] });
  // --control off: the file is the whole configuration, as before the control plane existed.
  let fileSnapshot: Snapshot | undefined;
  let file: StartConfigFile | undefined;
  if (o.control === 'off') {
    fileSnapshot = await loadConfig(ctx, o.config);
    if (!fileSnapshot) return 1;
  } else {
    try {
      file = await loadStartConfigFile(o.config, ctx.env);
    } catch (err) {
      report(ctx, (err as Error).message);
      return 1;
    }
  }
  const limitsMode = resolveLimitsMode(o.limits, o.nats);
  if (!limitsMode) {
    report(ctx, '--limits cluster needs NATS (--nats or NATS_URL): the grant ledger is a NATS KV bucket');
    return 2;
  }
  const upstream = fileSnapshot ? fileSnapshot.providers.get('smallest')?.upstream : file?.local.doc.providers['smallest']?.upstream;
  const target = o.simulator === 'auto' ? simulatorTargetOf(upstream) : undefined;
  // Checked before the control store opens: nothing to undo, one line on stderr.
  if (target && !ctx.ext.upstreamSimulator) {
    report(ctx, `the upstream ${upstream} is loopback, but the bundled simulator is not installed (dev/wiring.ts); start one yourself and pass --simulator off`);
    return 1;
  }
  let embedded: EmbeddedControl | undefined;
  if (file) {
    const opened = await openEmbeddedControl(ctx, { config: o.config, database: o.database, dataDir: o.dataDir, host: o.host, adminPort: o.adminPort, insecure: o.insecure, nats: o.nats, configBucket: o.configBucket, snapshotKeyFile: o.snapshotKeyFile, podSubject: o.podSubject }, file, logger);
    if (typeof opened === 'number') return opened;
    embedded = opened;
  }
  try {
    const from = embedded ? { snapshot: embedded.snapshot, source: embedded.inProcess.source, embedded } : { snapshot: fileSnapshot!, source: new StaticSnapshotSource(fileSnapshot!) };
    return await startWith(ctx, o, { logger, limitsMode, target, tls, ...from });
  } finally {
    await embedded?.close();
  }
});

interface StartPlan {
  readonly logger: Logger;
  readonly limitsMode: NonNullable<ReturnType<typeof resolveLimitsMode>>;
  readonly target: { host: string; port: number } | undefined;
  readonly tls: Exclude<ReturnType<typeof serverTlsFromFlags>, string>;
  /** The first snapshot, and the source the listeners read (the control plane swaps it). */
  readonly snapshot: Snapshot;
  readonly source: StaticSnapshotSource;
  readonly embedded?: EmbeddedControl;
}

/** The components of `start` once its snapshot exists, run until the signal aborts. */
async function startWith(ctx: RunContext, o: StartFlags, plan: StartPlan): Promise<number> {
  const { logger, limitsMode, target, tls, snapshot, source, embedded } = plan;
  const limits = limitsComponent({ mode: limitsMode, ...(o.nats ? { natsUrl: o.nats } : {}), bucket: o.grantBucket, snapshot: () => source.current(), logger });
  const simulator = target ? simulatorComponent(ctx, { ...target, profile: o.profile, accounts: simulatorAccounts(snapshot) }) : undefined;
  // An account added later (a reload, the control plane) has a key the simulator must accept too.
  if (simulator) source.onSwap((next) => simulator.addAccounts(simulatorAccounts(next)));
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
    ...(embedded ? [embedded.admin, embedded.inProcess.hup] : [reloadComponent(source, o.config, logger)]),
  ];
  const rollups = Boolean(o.nats && o.database);
  const usageMode = (o.nats ? (o.database ? 'nats+postgres' : 'nats') : `file ${o.spoolDir}/spans.jsonl`) + (embedded && !rollups ? '   (roll-ups and GET /admin/v1/usage need NATS_URL and DATABASE_URL)' : '');
  return serve(ctx, components, o.drainDelay, async () => {
    const control = embedded ? { url: embedded.admin.url ?? '-', store: embedded.storeLabel, revision: embedded.revision, bootstrapKey: embedded.bootstrapKey, imported: embedded.imported !== undefined, pods: embedded.pods } : undefined;
    ctx.stdout(await banner({ snapshot: source.current() ?? snapshot, configPath: o.config, edgeUrl: edge.url, grpcHost: o.host, grpcTls: Boolean(tls), grpcPort: grpc.port, httpPort: side.port, simulator: simulator?.url, usage: usageMode, control }));
  });
}

/** `word` as one POSIX shell word: bare when it is plain, single-quoted otherwise. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

interface ControlBanner {
  /** Base URL of the admin API. */
  readonly url: string;
  readonly store: string;
  readonly revision: number;
  readonly bootstrapKey: string | undefined;
  /** Whether this start imported the file into an empty store. */
  readonly imported: boolean;
  /** What separate `voicegate edge` pods need to follow this process, when they can. */
  readonly pods: PodFeed | undefined;
}

/** A demo key the bundled simulator accepts once an account holds it (it follows the snapshot). */
const DEMO_ACCOUNT = 'my-smallest';
const DEMO_SIMULATOR_KEY = 'sim-key-my-smallest-0001';

async function banner(p: { snapshot: Snapshot; configPath: string; edgeUrl: string; grpcHost: string; grpcTls: boolean; grpcPort: number; httpPort: number; simulator: string | undefined; usage: string; control: ControlBanner | undefined }): Promise<string> {
  const lines = [
    '',
    'voicegate is running',
    `  gateway (edge)     ${p.edgeUrl}`,
    `  decision (gRPC)    ${p.grpcHost.includes(':') ? `[${p.grpcHost}]` : p.grpcHost}:${p.grpcPort}${p.grpcTls ? ' (mutual TLS)' : ''}   envoy.service.auth.v3.Authorization, ext_proc, access logs, health`,
    `  metrics & usage    http://127.0.0.1:${p.httpPort}/metrics`,
    `  upstream           ${p.simulator ? `${p.simulator} (bundled simulator of api.smallest.ai)` : p.snapshot.providers.get('smallest')?.upstream ?? '-'}`,
    `  usage spans        ${p.usage}`,
    ...(p.control ? [`  admin API          ${p.control.url}/admin/v1   (control store: ${p.control.store}, revision ${p.control.revision})`] : []),
    ...(p.control?.pods?.bucket !== undefined ? [`  pods' snapshot     NATS KV ${p.control.pods.bucket}   (voicegate edge --control-nats URL --config-bucket ${p.control.pods.bucket}, key ${p.control.pods.key}; HTTP fallback GET ${p.control.url}/admin/v1/snapshot)`] : []),
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
  if (p.control) lines.push(...controlLines(p.control, p));
  lines.push('Press Ctrl-C to stop.', '');
  return lines.join('\n');
}

/** The control plane's part of the banner: the key (first start), the three steps with curl and the CLI. */
function controlLines(c: ControlBanner, p: { snapshot: Snapshot; configPath: string; edgeUrl: string; simulator: string | undefined }): string[] {
  const api = `${c.url}/admin/v1`;
  const cfg = shellWord(p.configPath);
  const dev = devIssuer(p.snapshot) !== undefined;
  const lines: string[] = [];
  if (c.bootstrapKey !== undefined) {
    lines.push(
      'The administrator key of the control plane (service account bootstrap-admin), shown this once and never again; store it:',
      `  export VG_ADMIN_KEY=${c.bootstrapKey}`,
      '',
    );
  }
  lines.push(
    c.imported
      ? `Accounts and models: imported from ${p.configPath} into the empty control store; from now on the store holds them (PUT /admin/v1/apply or \`voicegate apply -f FILE\` imports a file again).`
      : `Accounts and models come from the control store (${c.store}), not from ${p.configPath}; \`voicegate apply -f FILE\` (PUT /admin/v1/apply) imports the file again.`,
  );
  if (c.bootstrapKey === undefined) {
    lines.push(`VG_ADMIN_KEY below is the key printed on the first start${dev ? ', or a development administrator token:' : '.'}`);
    if (dev) lines.push(`  export VG_ADMIN_KEY=$(node bin/voicegate.js token --config ${cfg} --user admin --role voicegate-admin)`);
  }
  lines.push('');
  const auth = `-H "Authorization: Bearer $VG_ADMIN_KEY" -H 'Content-Type: application/json'`;
  // With the simulator a demo key works (it accepts the keys of accounts the control plane adds);
  // otherwise the user's own key, from the environment so that it stays out of shell history.
  const token = p.simulator ? DEMO_SIMULATOR_KEY : `'"$SMALLEST_API_KEY"'`;
  lines.push(
    p.simulator
      ? `Add an account (its key is stored encrypted and never shown again), a collaborator and a model, with curl:`
      : `Add an account with your Smallest key in SMALLEST_API_KEY (stored encrypted, never shown again), a collaborator and a model, with curl:`,
    `  curl -sS --fail-with-body -w '\\n' ${auth} \\`,
    `    -d '{"name":"${DEMO_ACCOUNT}","token":"${token}","concurrency_units":2}' ${api}/accounts`,
    `  curl -sS --fail-with-body -w '\\n' ${auth} \\`,
    `    -d '{"subject":"user:carol","role":"user"}' ${api}/accounts/${DEMO_ACCOUNT}/collaborators`,
    `  curl -sS --fail-with-body -w '\\n' ${auth} \\`,
    `    -d '{"model_id":"lightning-v3.1","type":"tts","price":{"per_1k_chars":"0.0195"}}' ${api}/accounts/${DEMO_ACCOUNT}/models`,
    '',
    'The same with the CLI (run from this folder):',
    `  export VOICEGATE_CONTROL_URL=${c.url} VOICEGATE_ADMIN_TOKEN="$VG_ADMIN_KEY"`,
    `  printf %s ${p.simulator ? DEMO_SIMULATOR_KEY : '"$SMALLEST_API_KEY"'} | node bin/voicegate.js admin accounts create ${DEMO_ACCOUNT} --units 2 --provider-token-file -`,
    `  node bin/voicegate.js admin collaborators add ${DEMO_ACCOUNT} user:carol`,
    `  node bin/voicegate.js admin models add ${DEMO_ACCOUNT} lightning-v3.1 --type tts --price-per-thousand-chars 0.0195`,
    '',
  );
  if (dev) {
    lines.push(
      `Then carol, a collaborator of ${DEMO_ACCOUNT} only, speaks through it (HTTP 200; 403 before the steps above):`,
      `  export CAROL_TOKEN=$(node bin/voicegate.js token --config ${cfg} --user carol)`,
      `  curl -sS -o carol.wav -w '%{http_code}\\n' -H "Authorization: Bearer $CAROL_TOKEN" -H 'Content-Type: application/json' \\`,
      `    -d '{"text":"Hello through my own account","voice_id":"magnus","output_format":"wav"}' ${p.edgeUrl}/smallest/waves/v1/lightning-v3.1/get_speech`,
      '',
    );
  }
  return lines;
}
