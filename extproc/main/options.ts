/**
 * The flags every command shares, each with its named default and environment variable, and the
 * one option schema per command built from them. A split-process deployment (edge, extproc,
 * aggregator, otel-export) agrees on the span stream because all of them read the same
 * definitions of `--stream` and `--subject-prefix`.
 */
import { z } from 'zod';
import { DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX } from '../adapters/nats/span-stream.ts';
import { USAGE_DIMENSIONS } from '../adapters/postgres/usage-query.ts';
import { DEFAULT_AGGREGATOR_DURABLE } from './components/aggregator.ts';
import { DEFAULT_OTEL_DURABLE } from './components/otel-export.ts';
import { BYTES, DELAY_MS, flag, mandatory, NON_NEGATIVE_INT, oneOf, optional, PORT, POSITIVE_INT, SWITCH, TEXT, withDefault, type Flag } from './flags.ts';
import { DEFAULT_DECISION_BODY_TIMEOUT_MS, DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS } from '../adapters/edge/server.ts';
import { DEFAULT_MAX_PAYLOAD_BYTES as DEFAULT_WS_MAX_PAYLOAD_BYTES, DEFAULT_MAX_SESSION_MS, DEFAULT_SESSION_TOKEN_GRACE_MS } from '../adapters/edge/ws-proxy.ts';
import { DEFAULT_SPAN_FILE_KEEP, DEFAULT_SPAN_FILE_MAX_BYTES } from '../adapters/files/file-sink.ts';
import { DEFAULT_SPOOL_MAX_BYTES } from '../adapters/nats/spool.ts';
import { DEFAULT_GRANT_BUCKET } from '../adapters/nats/grant-ledger.ts';
import { parseDurationSeconds } from './duration.ts';
import { DEFAULT_CONFIG_BUCKET } from '../core/control/snapshot-entry.ts';
import { DEFAULT_SNAPSHOT_CACHE, DEFAULT_SNAPSHOT_POLL_MS } from './components/control-snapshot.ts';

export const DEFAULT_START_CONFIG = 'examples/voicegate.yaml';
/** Public listeners of the split deployment bind every address, as Envoy's do. */
export const DEFAULT_PUBLIC_HOST = '0.0.0.0';
/** `start` is a development run: nothing is reachable from outside the machine. */
export const DEFAULT_LOCAL_HOST = '127.0.0.1';
export const DEFAULT_EDGE_PORT = 8080;
export const DEFAULT_GRPC_PORT = 50051;
/** 9464, not 8081: `start`'s admin API takes 8081, where `voicegate control` and `voicegate admin` expect it. */
export const DEFAULT_START_HTTP_PORT = 9464;
export const DEFAULT_START_ADMIN_PORT = 8081;
export const DEFAULT_START_DATA_DIR = '.voicegate/control';
export const DEFAULT_EXTPROC_HTTP_PORT = 9464;
export const DEFAULT_EDGE_HTTP_PORT = 9465;
export const DEFAULT_START_SPOOL_DIR = '.voicegate';
export const DEFAULT_EXTPROC_SPOOL_DIR = '.voicegate/extproc';
export const DEFAULT_EDGE_SPOOL_DIR = '.voicegate/edge';
/** No wait by default; set it to the load balancer's probe period in production. */
export const DEFAULT_DRAIN_DELAY_MS = 0;
/** Envoy's `--drain-time-s` is 600 s; Kubernetes' default grace period (30 s) is what bounds a pod. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Envoy opens a request's ext_proc stream right after Check allows; 5 s is ample (core/limits/slots.ts). */
export const DEFAULT_SLOT_CLAIM_TIMEOUT_MS = 5_000;
/** The longest wait between the edge's reconnect attempts to the decision service. */
export const DEFAULT_AUTHZ_RECONNECT_MAX_MS = 1000;
/** The edge's gRPC decision deadline: above Envoy's 200 ms, which a loaded machine can exceed. */
export const DEFAULT_EDGE_AUTHZ_TIMEOUT_MS = 1000;
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;
export const DEFAULT_USAGE_SINCE = '30d';
export const DEFAULT_CERTS_DIR = '.voicegate/certs';
export const DEFAULT_CERT_DAYS = 365;

const AUTHZ = z.string().refine((v) => v === 'inproc' || /^grpc:\/\/[^/]+:\d+$/.test(v) || /^unix:\/.+/.test(v), 'must be "inproc", grpc://host:port or unix:/path');
const TTL = z.string().transform((t, ctx) => parseDurationSeconds(t) ?? (ctx.addIssue({ code: 'custom', message: 'must look like 90s, 15m, 1h or 7d' }), z.NEVER));
const LIST = z.array(TEXT);

/** The shared definitions; commands pick them and set their own defaults. */
export const FLAGS = {
  config: optional({ flag: 'config', value: 'FILE', help: 'the voicegate YAML configuration', schema: TEXT }),
  host: optional({ flag: 'host', value: 'HOST', help: 'address the listeners bind', schema: TEXT }),
  port: optional({ flag: 'port', value: 'PORT', help: 'main listening port (0: any free port)', schema: PORT }),
  grpcPort: flag({ flag: 'grpc-port', value: 'PORT', help: 'port of the decision service (gRPC)', fallback: DEFAULT_GRPC_PORT, schema: PORT }),
  httpPort: optional({ flag: 'http-port', value: 'PORT', help: 'side port: /metrics, /healthz, /readyz', schema: PORT }),
  nats: optional({ flag: 'nats', value: 'URL', env: 'NATS_URL', help: 'NATS server of the span stream', schema: TEXT }),
  database: optional({ flag: 'database', value: 'URL', env: 'DATABASE_URL', help: 'PostgreSQL of the usage roll-ups', schema: TEXT }),
  stream: flag({ flag: 'stream', value: 'NAME', env: 'VOICEGATE_STREAM', help: 'JetStream stream of usage spans', fallback: DEFAULT_STREAM, schema: TEXT }),
  subjectPrefix: flag({ flag: 'subject-prefix', value: 'PREFIX', env: 'VOICEGATE_SUBJECT_PREFIX', help: 'subjects spans are published under', fallback: DEFAULT_SUBJECT_PREFIX, schema: TEXT }),
  durable: flag({ flag: 'durable', value: 'NAME', env: 'VOICEGATE_DURABLE', help: "durable name of the aggregator's consumer", fallback: DEFAULT_AGGREGATOR_DURABLE, schema: TEXT }),
  spoolDir: optional({ flag: 'spool-dir', value: 'DIR', help: 'spool while NATS is away, or spans.jsonl without NATS', schema: TEXT }),
  drainDelay: flag({ flag: 'drain-delay', value: 'MS', help: 'on SIGTERM: report not ready but keep accepting this long (ms, or 5s), then stop accepting and drain', fallback: DEFAULT_DRAIN_DELAY_MS, schema: DELAY_MS }),
  drainTimeout: flag({ flag: 'drain-timeout', value: 'MS', help: 'after accepting stopped: time in-flight REST, SSE and gRPC calls have to finish before WebSockets get 1001 and the rest is cut (ms, or 30s)', fallback: DEFAULT_DRAIN_TIMEOUT_MS, schema: DELAY_MS }),
} satisfies Record<string, Flag<unknown>>;

const spanStream = { nats: FLAGS.nats, stream: FLAGS.stream, subjectPrefix: FLAGS.subjectPrefix };

// A zero deadline would switch the bound off; these exist to bound what a caller holds.
const DEADLINE_MS = DELAY_MS.refine((ms) => ms > 0, 'must be above 0');
/** A session lifetime: ms, or `90s`, `30m`, `1h`; above 0 (a zero would let activity keep a session forever). */
const LIFETIME_MS = z
  .string()
  .regex(/^\d+(ms|s|m|h)?$/, 'must be milliseconds or a duration like 90s, 30m, 1h')
  .transform((text) => {
    const m = /^(\d+)(ms|s|m|h)?$/.exec(text)!;
    return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : m[2] === 'h' ? 3_600_000 : 1);
  })
  .refine((ms) => ms > 0 && ms < 2 ** 31, 'must be above 0 and below 596h');

/** The edge's bounds on what a caller can hold before and around the decision (`edge`, `start`). */
const edgeLimits = {
  headersTimeout: flag({ flag: 'headers-timeout', value: 'MS', help: 'time a client has to send its whole request head (ms, or 10s)', fallback: DEFAULT_HEADERS_TIMEOUT_MS, schema: DEADLINE_MS }),
  decisionBodyTimeout: flag({ flag: 'decision-body-timeout', value: 'MS', help: 'time a client has to send the body bytes the decision reads; past it 408 request_timeout', fallback: DEFAULT_DECISION_BODY_TIMEOUT_MS, schema: DEADLINE_MS }),
  maxConnections: flag({ flag: 'max-connections', value: 'N', help: 'client connections the edge holds at once; further ones are closed at accept', fallback: DEFAULT_MAX_CONNECTIONS, schema: POSITIVE_INT }),
  maxWsPayload: flag({ flag: 'max-ws-payload', value: 'BYTES', help: 'largest WebSocket message on either leg (bytes, or 64KiB, 16MiB); larger closes with 1009', fallback: DEFAULT_WS_MAX_PAYLOAD_BYTES, schema: BYTES }),
  maxSession: flag({ flag: 'max-session', value: 'MS', help: 'longest a WebSocket session lasts however active (ms, or 30m, 1h); then 1008', fallback: DEFAULT_MAX_SESSION_MS, schema: LIFETIME_MS }),
  sessionTokenGrace: flag({ flag: 'session-token-grace', value: 'MS', help: "how long a WebSocket session may outlive its token's exp beyond the issuer's clock skew (ms, or 5m)", fallback: DEFAULT_SESSION_TOKEN_GRACE_MS, schema: DELAY_MS }),
  limits: flag({ flag: 'limits', value: 'auto|cluster|pod', env: 'VOICEGATE_LIMITS', help: "account units: leased from the cluster's grant ledger on NATS KV (cluster), or all of them for this process (pod); auto: cluster when NATS is set", fallback: 'auto', schema: oneOf(['auto', 'cluster', 'pod']) }),
  grantBucket: flag({ flag: 'grant-bucket', value: 'NAME', env: 'VOICEGATE_GRANT_BUCKET', help: 'NATS KV bucket of the grant ledger (created with 1 replica, history 1)', fallback: DEFAULT_GRANT_BUCKET, schema: TEXT }),
};

/**
 * Accounts, collaborators, models, teams and service keys from the control plane (issue 11):
 * with --control-url or --control-nats the --config file supplies only identity, providers,
 * cors and limits (`edge`, `extproc`). Without either, the file is the whole configuration.
 */
const controlPlane = {
  controlNats: optional({ flag: 'control-nats', value: 'URL', env: 'VOICEGATE_CONTROL_NATS', help: "NATS server holding the control plane's snapshot (KV); with --control-url alone, --nats is used", schema: TEXT }),
  configBucket: flag({ flag: 'config-bucket', value: 'NAME', env: 'VOICEGATE_CONFIG_BUCKET', help: 'NATS KV bucket of the snapshot (large ones in the object store NAME-objects)', fallback: DEFAULT_CONFIG_BUCKET, schema: TEXT }),
  controlUrl: optional({ flag: 'control-url', value: 'URL', env: 'VOICEGATE_CONTROL_URL', help: 'control plane polled over HTTP (GET /admin/v1/snapshot) while NATS is unreachable', schema: TEXT }),
  snapshotKeyFile: optional({ flag: 'snapshot-key-file', value: 'FILE', help: 'keyring opening the snapshot\'s provider tokens (id:base64,…; mode 0600); or the key itself in VOICEGATE_SNAPSHOT_KEY', schema: TEXT }),
  podTokenFile: optional({ flag: 'pod-token-file', value: 'FILE', env: 'VOICEGATE_POD_TOKEN_FILE', help: 'token presented to --control-url (mode 0600)', schema: TEXT }),
  snapshotCache: flag({ flag: 'snapshot-cache', value: 'FILE', env: 'VOICEGATE_SNAPSHOT_CACHE', help: 'encrypted copy of the last good snapshot, served after a restart while NATS and the control plane are away', fallback: DEFAULT_SNAPSHOT_CACHE, schema: TEXT }),
  snapshotPoll: flag({ flag: 'snapshot-poll', value: 'MS', help: 'period of the HTTP poll while NATS is unreachable (ms, or 2s)', fallback: DEFAULT_SNAPSHOT_POLL_MS, schema: DELAY_MS.refine((ms) => ms > 0, 'must be above 0') }),
};

/** Disk bounds of the usage spans (every command that records them). */
const usageFiles = {
  spoolMaxBytes: flag({ flag: 'spool-max-bytes', value: 'BYTES', help: 'cap of the NATS spool file (bytes, or 256MiB); when full the newest spans are dropped and counted', fallback: DEFAULT_SPOOL_MAX_BYTES, schema: BYTES }),
  spanFileMaxBytes: flag({ flag: 'span-file-max-bytes', value: 'BYTES', help: 'without NATS: rotate spans.jsonl at this size (bytes, or 64MiB)', fallback: DEFAULT_SPAN_FILE_MAX_BYTES, schema: BYTES }),
  spanFileKeep: flag({ flag: 'span-file-keep', value: 'N', help: 'rotated span files kept (spans.jsonl.1 …)', fallback: DEFAULT_SPAN_FILE_KEEP, schema: NON_NEGATIVE_INT }),
};

/** Peer authentication of the gRPC services (mutual TLS), shared by `extproc` and `start`. */
const grpcTls = {
  tlsCert: optional({ flag: 'tls-cert', value: 'FILE', env: 'VOICEGATE_TLS_CERT', help: 'gRPC server certificate (PEM); with --tls-key and --tls-ca, mutual TLS', schema: TEXT }),
  tlsKey: optional({ flag: 'tls-key', value: 'FILE', env: 'VOICEGATE_TLS_KEY', help: 'private key of --tls-cert (PEM)', schema: TEXT }),
  tlsCa: optional({ flag: 'tls-ca', value: 'FILE', env: 'VOICEGATE_TLS_CA', help: 'CA every gRPC client certificate must be issued by (PEM)', schema: TEXT }),
  insecure: flag({ flag: 'insecure', help: 'serve gRPC without TLS on a non-loopback --host (anyone reaching it gets provider keys)', fallback: false, schema: SWITCH }),
};

export const START_OPTIONS = {
  config: withDefault(FLAGS.config, DEFAULT_START_CONFIG),
  host: withDefault(FLAGS.host, DEFAULT_LOCAL_HOST),
  port: withDefault({ ...FLAGS.port, help: 'port of the embedded edge' }, DEFAULT_EDGE_PORT),
  ...edgeLimits,
  grpcPort: FLAGS.grpcPort,
  httpPort: withDefault({ ...FLAGS.httpPort, help: 'side port: /metrics, /healthz, /readyz, /usage' }, DEFAULT_START_HTTP_PORT),
  ...grpcTls,
  simulator: flag({ flag: 'simulator', value: 'auto|off', help: 'run the bundled simulator when the upstream is a loopback address', fallback: 'auto', schema: oneOf(['auto', 'off']) }),
  profile: flag({ flag: 'profile', value: 'realistic|instant', help: "the simulator's latency profile", fallback: 'realistic', schema: oneOf(['realistic', 'instant']) }),
  spoolDir: withDefault(FLAGS.spoolDir, DEFAULT_START_SPOOL_DIR),
  ...usageFiles,
  ...spanStream,
  nats: { ...FLAGS.nats, help: "NATS server of the span stream, the grant ledger and, with the embedded control plane, the pods' snapshot (KV --config-bucket)" },
  database: { ...FLAGS.database, help: 'PostgreSQL of the embedded control plane (needs VOICEGATE_KEK) and, with --nats, of the usage roll-ups; without it the control plane runs on PGlite under --data-dir' },
  durable: FLAGS.durable,
  control: flag({ flag: 'control', value: 'embedded|off', help: 'accounts and models from the embedded control plane (admin API on --admin-port; the file seeds an empty store), or from the file alone (off)', fallback: 'embedded', schema: oneOf(['embedded', 'off']) }),
  adminPort: withDefault(optional({ flag: 'admin-port', value: 'PORT', help: 'port of the admin API (/admin/v1) of the embedded control plane, on --host', schema: PORT }), DEFAULT_START_ADMIN_PORT),
  dataDir: flag({ flag: 'data-dir', value: 'DIR', help: "PGlite's data without --database (the development KEK goes in its parent folder); one process per folder", fallback: DEFAULT_START_DATA_DIR, schema: TEXT }),
  // With --nats the embedded control plane also publishes for separate `voicegate edge` pods.
  configBucket: { ...controlPlane.configBucket, help: "with --nats: NATS KV bucket the embedded control plane publishes the pods' snapshot to, created if missing" },
  snapshotKeyFile: { ...controlPlane.snapshotKeyFile, help: "keyring sealing the snapshot's provider tokens for pods (id:base64,…; mode 0600); or VOICEGATE_SNAPSHOT_KEY; needed on PostgreSQL with --nats; PGlite without either: a development key beside the data" },
  podSubject: flag({ flag: 'pod-subject', value: 'SUBJECT', help: 'a subject that may read GET /admin/v1/snapshot besides administrators (repeatable; replaces the default service:voicegate-pods)', multiple: true, fallback: ['service:voicegate-pods'] as string[], schema: z.array(z.string().regex(/^(user|service):[\x21-\x7e]{1,200}$/, 'must be user:<name> or service:<name>')) }),
  drainDelay: FLAGS.drainDelay,
  drainTimeout: FLAGS.drainTimeout,
};

export const EXTPROC_OPTIONS = {
  config: mandatory(FLAGS.config),
  // Loopback unless told otherwise: these services hand out provider keys.
  host: withDefault(FLAGS.host, DEFAULT_LOCAL_HOST),
  port: withDefault({ ...FLAGS.port, help: 'port of the gRPC services Envoy calls' }, DEFAULT_GRPC_PORT),
  socket: optional({ flag: 'socket', value: 'PATH', help: 'serve gRPC on this Unix socket (mode 0600) instead of --host:--port', schema: TEXT }),
  ...grpcTls,
  // Check takes the units of what it allows (REST, SSE, STT WebSockets), leased like the edge's.
  limits: edgeLimits.limits,
  grantBucket: edgeLimits.grantBucket,
  slotClaimTimeout: flag({ flag: 'slot-claim-timeout', value: 'MS', help: "units Check took are released when no ext_proc stream claims them within this (ms, or 5s)", fallback: DEFAULT_SLOT_CLAIM_TIMEOUT_MS, schema: DEADLINE_MS }),
  httpPort: withDefault(FLAGS.httpPort, DEFAULT_EXTPROC_HTTP_PORT),
  spoolDir: withDefault(FLAGS.spoolDir, DEFAULT_EXTPROC_SPOOL_DIR),
  ...usageFiles,
  ...spanStream,
  ...controlPlane,
  drainDelay: FLAGS.drainDelay,
  drainTimeout: FLAGS.drainTimeout,
};

export const EDGE_OPTIONS = {
  config: mandatory(FLAGS.config),
  host: withDefault(FLAGS.host, DEFAULT_PUBLIC_HOST),
  port: withDefault({ ...FLAGS.port, help: 'port of the edge (the public listener)' }, DEFAULT_EDGE_PORT),
  authz: flag({ flag: 'authz', value: 'inproc|grpc://HOST:PORT', help: 'decide in process, or ask `voicegate extproc` over gRPC', fallback: 'inproc', schema: AUTHZ }),
  authzCa: optional({ flag: 'authz-ca', value: 'FILE', help: "verify the gRPC decision service's certificate against this CA (PEM); turns on TLS", schema: TEXT }),
  authzCert: optional({ flag: 'authz-cert', value: 'FILE', help: 'client certificate presented to the gRPC decision service (PEM)', schema: TEXT }),
  authzKey: optional({ flag: 'authz-key', value: 'FILE', help: 'private key of --authz-cert (PEM)', schema: TEXT }),
  authzServerName: optional({ flag: 'authz-server-name', value: 'NAME', help: "name the decision service's certificate must carry (default: the --authz host)", schema: TEXT }),
  authzTimeout: flag({ flag: 'authz-timeout', value: 'MS', help: 'deadline of each gRPC decision (ms, or 1s); past it the answer is 503 authz_unavailable', fallback: DEFAULT_EDGE_AUTHZ_TIMEOUT_MS, schema: DELAY_MS }),
  authzReconnectMax: flag({ flag: 'authz-reconnect-max', value: 'MS', help: 'longest wait between reconnect attempts to the gRPC decision service (ms, or 1s)', fallback: DEFAULT_AUTHZ_RECONNECT_MAX_MS, schema: DELAY_MS.refine((ms) => ms > 0, 'must be above 0') }),
  ...edgeLimits,
  httpPort: withDefault(FLAGS.httpPort, DEFAULT_EDGE_HTTP_PORT),
  spoolDir: withDefault(FLAGS.spoolDir, DEFAULT_EDGE_SPOOL_DIR),
  ...usageFiles,
  ...spanStream,
  ...controlPlane,
  drainDelay: FLAGS.drainDelay,
  drainTimeout: FLAGS.drainTimeout,
};

export const CERTS_OPTIONS = {
  out: flag({ flag: 'out', value: 'DIR', help: 'folder of the CA, server and client certificates', fallback: DEFAULT_CERTS_DIR, schema: TEXT }),
  name: flag({ flag: 'name', value: 'NAME', help: 'another DNS name or IP of the server certificate (repeatable; localhost, 127.0.0.1 and ::1 always)', multiple: true, fallback: [] as string[], schema: LIST }),
  days: flag({ flag: 'days', value: 'N', help: 'validity in days', fallback: DEFAULT_CERT_DAYS, schema: POSITIVE_INT }),
  force: flag({ flag: 'force', help: 'replace an existing set (otherwise a complete set is kept)', fallback: false, schema: SWITCH }),
  owner: optional({ flag: 'owner', value: 'UID:GID', help: 'give the files to this user (needs root; for container volumes)', schema: z.string().regex(/^\d+:\d+$/, 'must be UID:GID').transform((v) => { const [uid, gid] = v.split(':').map(Number) as [number, number]; return { uid, gid }; }) }),
};

export const TOKEN_OPTIONS = {
  config: mandatory(FLAGS.config),
  user: mandatory(optional({ flag: 'user', value: 'USER', help: 'the subject of the token', schema: TEXT })),
  team: flag({ flag: 'team', value: 'TEAM', help: 'a team claim (repeatable)', multiple: true, fallback: [] as string[], schema: LIST }),
  role: flag({ flag: 'role', value: 'ROLE', help: 'a role claim (repeatable)', multiple: true, fallback: [] as string[], schema: LIST }),
  ttl: flag({ flag: 'ttl', value: 'DURATION', help: 'lifetime: 90s, 15m, 1h, 7d', fallback: DEFAULT_TOKEN_TTL_SECONDS, schema: TTL }),
};

const consumer = {
  nats: mandatory(FLAGS.nats),
  stream: FLAGS.stream,
  subjectPrefix: FLAGS.subjectPrefix,
};

export const AGGREGATOR_OPTIONS = {
  ...consumer,
  database: mandatory(FLAGS.database),
  durable: FLAGS.durable,
  batch: optional({ flag: 'batch', value: 'N', help: 'spans per transaction', schema: POSITIVE_INT }),
  ackWait: optional({ flag: 'ack-wait', value: 'MS', help: 'redelivery delay of an unacknowledged batch', schema: POSITIVE_INT }),
  httpPort: { ...FLAGS.httpPort, help: 'side port with /metrics (none unless given)' },
  drainDelay: FLAGS.drainDelay,
};

export const OTEL_EXPORT_OPTIONS = {
  ...consumer,
  endpoint: mandatory(optional({ flag: 'endpoint', value: 'URL', env: 'OTEL_EXPORTER_OTLP_ENDPOINT', help: 'OTLP/HTTP receiver (…/v1/traces is added)', schema: TEXT })),
  // Not VOICEGATE_DURABLE: that names the aggregator's consumer, and two consumers sharing one
  // durable would split the stream between them instead of each reading all of it.
  durable: { ...FLAGS.durable, env: undefined, help: "durable name of the exporter's consumer", fallback: DEFAULT_OTEL_DURABLE },
  httpPort: { ...FLAGS.httpPort, help: 'side port with /metrics (none unless given)' },
  drainDelay: FLAGS.drainDelay,
} as const;

export const USAGE_OPTIONS = {
  by: flag({ flag: 'by', value: USAGE_DIMENSIONS.join('|'), help: 'roll-up dimension', fallback: 'user', schema: oneOf(USAGE_DIMENSIONS) }),
  since: flag({ flag: 'since', value: 'ISO|7d', help: 'start of the period', fallback: DEFAULT_USAGE_SINCE, schema: TEXT }),
  json: flag({ flag: 'json', help: 'print JSON instead of a table', fallback: false, schema: SWITCH }),
  database: mandatory(FLAGS.database),
};

export const DEFAULT_CONTROL_LISTEN = '127.0.0.1:8081';
export const DEFAULT_CONTROL_DATA_DIR = '.voicegate/control';
const LISTEN = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be HOST:PORT (IPv6 as [::1]:8081)');

export const CONTROL_OPTIONS = {
  config: { ...FLAGS.config, help: 'YAML configuration whose identity.issuers verify admin JWTs (without it only vg_ service keys authenticate)' },
  listen: flag({ flag: 'listen', value: 'HOST:PORT', env: 'VOICEGATE_CONTROL_LISTEN', help: 'address of the admin API (loopback unless TLS or --insecure)', fallback: DEFAULT_CONTROL_LISTEN, schema: LISTEN }),
  adminRole: flag({ flag: 'admin-role', value: 'ROLE', env: 'VOICEGATE_ADMIN_ROLE', help: "roles-claim value of administrators, as the identity layer qualifies it (corp:voicegate-admin for an issuer named corp)", fallback: 'voicegate-admin', schema: TEXT }),
  adminSubject: flag({ flag: 'admin-subject', value: 'SUBJECT', help: 'a subject that is an administrator whatever its token says (repeatable; replaces the default service:bootstrap-admin)', multiple: true, fallback: ['service:bootstrap-admin'] as string[], schema: z.array(z.string().regex(/^(user|service):[\x21-\x7e]{1,200}$/, 'must be user:<name> or service:<name>')) }),
  database: { ...FLAGS.database, help: 'PostgreSQL of the control plane (and the usage roll-ups); without it, PGlite under --data-dir' },
  dataDir: flag({ flag: 'data-dir', value: 'DIR', help: "PGlite's data without --database (the development KEK goes in its parent folder)", fallback: DEFAULT_CONTROL_DATA_DIR, schema: TEXT }),
  bootstrap: flag({ flag: 'bootstrap', value: 'auto|off', help: 'on a store that never had a service account, create bootstrap-admin and print its key once', fallback: 'auto', schema: oneOf(['auto', 'off']) }),
  tlsCert: optional({ flag: 'tls-cert', value: 'FILE', env: 'VOICEGATE_CONTROL_TLS_CERT', help: 'serve HTTPS with this certificate (PEM); with --tls-key', schema: TEXT }),
  tlsKey: optional({ flag: 'tls-key', value: 'FILE', env: 'VOICEGATE_CONTROL_TLS_KEY', help: 'private key of --tls-cert (PEM)', schema: TEXT }),
  insecure: flag({ flag: 'insecure', help: 'serve plain HTTP on a non-loopback --listen (bearer tokens and provider keys in clear)', fallback: false, schema: SWITCH }),
  nats: { ...FLAGS.nats, help: "NATS server to publish the pods' snapshot to (KV --config-bucket); without it pods read GET /admin/v1/snapshot only" },
  configBucket: { ...controlPlane.configBucket, help: 'NATS KV bucket of the snapshot, created if missing (large ones in the object store NAME-objects)' },
  snapshotKeyFile: { ...controlPlane.snapshotKeyFile, help: "keyring sealing the snapshot's provider tokens for pods (id:base64,…; mode 0600); or VOICEGATE_SNAPSHOT_KEY; PGlite without either: a development key beside the data" },
  podSubject: flag({ flag: 'pod-subject', value: 'SUBJECT', help: 'a subject that may read GET /admin/v1/snapshot besides administrators (repeatable; replaces the default service:voicegate-pods)', multiple: true, fallback: ['service:voicegate-pods'] as string[], schema: z.array(z.string().regex(/^(user|service):[\x21-\x7e]{1,200}$/, 'must be user:<name> or service:<name>')) }),
  drainDelay: FLAGS.drainDelay,
};
