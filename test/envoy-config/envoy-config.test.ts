import { describe, expect, it } from 'vitest';
import type protobuf from 'protobufjs';
import { at, cluster, connectionManager, ENVOY_FILES, httpFilters, readYaml, routes } from './envoy-files.ts';
import { ensureTypeForUrl, loadRootForConfig } from './envoy-proto-root.ts';
import { roundTrip } from './proto-round-trip.ts';
import { checkStrict, type StrictIssue } from './strict-proto-check.ts';

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const EXT_AUTHZ_NS = 'envoy.filters.http.ext_authz';

type Obj = Record<string, unknown>;

async function check(config: unknown): Promise<{ root: protobuf.Root; issues: StrictIssue[]; normalized: unknown }> {
  const root = await loadRootForConfig(config);
  return { root, ...checkStrict(root, BOOTSTRAP, config) };
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

describe.each(ENVOY_FILES)('%s decodes strictly as an Envoy v3 Bootstrap', (file) => {
  const config = readYaml(file);

  it('has no unknown field, bad enum, doubled oneof, unknown @type or broken validation rule', async () => {
    const { issues } = await check(config);
    expect(issues).toEqual([]);
  });

  it('builds, verifies, encodes and decodes with protobufjs, every typed_config included', async () => {
    const { root, normalized } = await check(config);
    const { errors, anyTypes } = roundTrip(root, BOOTSTRAP, normalized);
    expect(errors).toEqual([]);
    expect(new Set(anyTypes)).toEqual(
      new Set([
        'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
        'envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig',
        'envoy.extensions.filters.http.cors.v3.Cors',
        'envoy.extensions.filters.http.cors.v3.CorsPolicy',
        'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
        'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
        'envoy.extensions.filters.http.router.v3.Router',
        'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',
        'envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        // Both files: the extproc cluster's mutual TLS (and, in envoy.yaml, the provider's TLS).
        'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      ]),
    );
  });
});

describe('the strict checker catches broken configs (mutated copies of envoy.yaml)', () => {
  const base = readYaml('envoy/envoy.yaml');

  it('an unknown field, with its path', async () => {
    const bad = clone(base) as Obj;
    (at(bad, 'static_resources', 'clusters', 0) as Obj)['conect_timeout'] = '1s';
    const { issues } = await check(bad);
    expect(issues).toEqual([
      { path: 'static_resources.clusters[0].conect_timeout', message: expect.stringContaining('unknown field') },
    ]);
  });

  it('an unknown field inside a typed_config', async () => {
    const bad = clone(base);
    (httpFilters(bad)[1]!.typed_config)['failure_mode_alow'] = false;
    const { issues } = await check(bad);
    expect(issues.map((i) => i.path)).toEqual([
      'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.failure_mode_alow',
    ]);
  });

  it('a bad enum value', async () => {
    const bad = clone(base);
    (cluster(bad, 'smallest'))['type'] = 'LOGICAL';
    const { issues } = await check(bad);
    expect(issues).toEqual([{ path: 'static_resources.clusters[1].type', message: expect.stringContaining('not a value of enum') }]);
  });

  it('two members of one oneof', async () => {
    const bad = clone(base);
    const healthz = routes(bad)[0]!;
    (healthz.match as Obj)['prefix'] = '/healthz';
    const { issues } = await check(bad);
    expect(issues).toEqual([
      {
        path: 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match',
        message: expect.stringMatching(/oneof "path_specifier" has 2 members set: (prefix, path|path, prefix)/),
      },
    ]);
  });

  it('an unknown @type', async () => {
    const bad = clone(base);
    httpFilters(bad)[3]!.typed_config['@type'] = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr';
    const { issues } = await check(bad);
    expect(issues).toEqual([
      {
        path: 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[3].typed_config.@type',
        message: 'unknown @type type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr',
      },
    ]);
  });

  it('a malformed duration, a string for a number and a deprecated field', async () => {
    const bad = clone(base);
    const extAuthz = httpFilters(bad)[1]!.typed_config;
    (extAuthz['grpc_service'] as Obj)['timeout'] = '200ms';
    (cluster(bad, 'extproc')['health_checks'] as Obj[])[0]!['unhealthy_threshold'] = 'two';
    (at(cluster(bad, 'smallest'), 'transport_socket', 'typed_config', 'common_tls_context', 'validation_context') as Obj)[
      'match_subject_alt_names'
    ] = [{ exact: 'api.smallest.ai' }];
    const { issues } = await check(bad);
    expect(issues.map((i) => i.message)).toEqual([
      expect.stringContaining('expected a duration'),
      expect.stringContaining('expected an integer'),
      expect.stringContaining('deprecated field "match_subject_alt_names"'),
    ]);
  });

  it('a missing required message (PGV rule Envoy enforces at load)', async () => {
    const bad = clone(base);
    const grpcLog = (connectionManager(bad)['access_log'] as Obj[])[1]!;
    delete (at(grpcLog, 'typed_config', 'common_config') as Obj)['grpc_service'];
    const { issues } = await check(bad);
    expect(issues.map((i) => i.message)).toEqual(['required field "grpc_service" is missing']);
  });

  it('loads a typed_config type on demand from its package folder', async () => {
    const root = await loadRootForConfig({});
    const type = await ensureTypeForUrl(root, 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors');
    expect(type?.fullName).toBe('.envoy.extensions.filters.http.cors.v3.Cors');
    expect(await ensureTypeForUrl(root, 'type.googleapis.com/envoy.nothing.v3.Nope')).toBeNull();
  });
});

describe('envoy.local.yaml differs from envoy.yaml only in the upstream cluster', () => {
  it('is identical once cluster `smallest` is set aside, and that cluster is the simulator over plain HTTP', () => {
    const prod = readYaml('envoy/envoy.yaml') as Obj;
    const local = readYaml('envoy/envoy.local.yaml') as Obj;
    const withoutUpstream = (c: Obj): Obj => {
      const copy = clone(c);
      const resources = copy['static_resources'] as Obj;
      resources['clusters'] = (resources['clusters'] as Obj[]).filter((x) => x['name'] !== 'smallest');
      return copy;
    };
    expect(withoutUpstream(local)).toEqual(withoutUpstream(prod));
    const sim = cluster(local, 'smallest');
    expect(at(sim, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address')).toEqual({
      address: 'simulator',
      port_value: 7070,
    });
    expect(sim['transport_socket']).toBeUndefined();
    const { transport_socket: _tls, load_assignment: _la1, ...prodRest } = cluster(prod, 'smallest');
    const { load_assignment: _la2, ...localRest } = sim;
    expect(localRest).toEqual(prodRest);
  });
});

describe.each(ENVOY_FILES)('%s has the properties the gateway relies on', (file) => {
  const config = readYaml(file);
  const hcm = connectionManager(config);
  const filters = httpFilters(config);

  it('listens on 0.0.0.0:8080 and keeps admin on 127.0.0.1:9901', () => {
    expect(at(config, 'static_resources', 'listeners', 0, 'address', 'socket_address')).toEqual({
      address: '0.0.0.0',
      port_value: 8080,
    });
    expect(at(config, 'admin', 'address', 'socket_address')).toEqual({ address: '127.0.0.1', port_value: 9901 });
  });

  it('upgrades WebSockets, generates request ids, trusts the remote address, bounds idle streams', () => {
    expect(hcm['upgrade_configs']).toEqual([{ upgrade_type: 'websocket' }]);
    expect(hcm['generate_request_id']).toBe(true);
    expect(hcm['use_remote_address']).toBe(true);
    expect(hcm['stream_idle_timeout']).toMatch(/^[1-9]\d*s$/);
  });

  it('normalises paths and rejects escaped slashes, so routes see the path the provider will', () => {
    expect(hcm['normalize_path']).toBe(true);
    expect(hcm['merge_slashes']).toBe(true);
    expect(hcm['path_with_escaped_slashes_action']).toBe('REJECT_REQUEST');
  });

  it('runs cors, then ext_authz, then ext_proc, then the router', () => {
    expect(filters.map((f) => f.name)).toEqual([
      'envoy.filters.http.cors',
      'envoy.filters.http.ext_authz',
      'envoy.filters.http.ext_proc',
      'envoy.filters.http.router',
    ]);
  });

  it('answers preflights with the CORS policy of examples/voicegate.yaml, never forwarding a refused one', () => {
    const cors = (readYaml('examples/voicegate.yaml') as Obj)['cors'] as Obj;
    const policy = at(hcm, 'route_config', 'virtual_hosts', 0, 'typed_per_filter_config', 'envoy.filters.http.cors') as Obj;
    expect(policy['@type']).toBe('type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy');
    // Exact matchers only: a prefix or regex would admit origins the decision then refuses.
    expect(policy['allow_origin_string_match']).toEqual((cors['allowed_origins'] as string[]).map((o) => ({ exact: o })));
    expect(policy['allow_methods']).toBe((cors['allowed_methods'] as string[]).join(', '));
    expect(policy['allow_headers']).toBe((cors['allowed_headers'] as string[]).join(', '));
    expect(policy['expose_headers']).toBe((cors['expose_headers'] as string[]).join(', '));
    expect(policy['max_age']).toBe(String(cors['max_age_seconds']));
    expect(policy['forward_not_matching_preflights']).toBe(false);
    // Browsers reject `*` with credentials; voicegate's callers authenticate with a header, never cookies.
    expect(policy['allow_credentials']).toBeUndefined();
  });

  it('ext_authz fails closed over gRPC V3 to extproc with a 0.2s timeout, 503 on error, no global body', () => {
    const authz = filters[1]!.typed_config;
    expect(authz['failure_mode_allow']).toBe(false);
    expect(authz['status_on_error']).toEqual({ code: 'ServiceUnavailable' });
    expect(authz['transport_api_version']).toBe('V3');
    expect(authz['grpc_service']).toEqual({ envoy_grpc: { cluster_name: 'extproc' }, timeout: '0.2s' });
    expect(authz['with_request_body']).toBeUndefined();
    expect(authz['include_peer_certificate']).toBe(false);
    // No allowlist: authorization, x-api-key, cookie… all reach Check.
    expect(authz['allowed_headers']).toBeUndefined();
  });

  it('ext_proc only observes: headers sent, bodies NONE, trailers skipped, ext_authz metadata forwarded, never blocks', () => {
    const proc = filters[2]!.typed_config;
    expect(proc['observability_mode']).toBe(true);
    expect(proc['failure_mode_allow']).toBe(true);
    expect(proc['processing_mode']).toEqual({
      request_header_mode: 'SEND',
      response_header_mode: 'SEND',
      request_body_mode: 'NONE',
      response_body_mode: 'NONE',
      request_trailer_mode: 'SKIP',
      response_trailer_mode: 'SKIP',
    });
    expect(at(proc, 'metadata_options', 'forwarding_namespaces', 'untyped')).toEqual([EXT_AUTHZ_NS]);
    // No stream timeout: the ext_proc stream must outlive long SSE and WebSocket sessions.
    expect(proc['grpc_service']).toEqual({ envoy_grpc: { cluster_name: 'extproc' } });
    const hidden = (at(proc, 'forward_rules', 'disallowed_headers', 'patterns') as { exact: string }[]).map((p) => p.exact);
    expect(hidden).toEqual(expect.arrayContaining(['authorization', 'x-api-key', 'cookie']));
  });

  it('logs JSON to stdout with the ext_authz metadata, and never a credential or the query string', () => {
    const logs = hcm['access_log'] as { name: string; typed_config: Obj }[];
    const stdout = logs.find((l) => l.name === 'envoy.access_loggers.stdout')!;
    const format = at(stdout.typed_config, 'log_format', 'json_format') as Record<string, string>;
    for (const key of ['user', 'teams', 'model', 'account', 'route_kind', 'characters']) {
      expect(format[key]).toBe(`%DYNAMIC_METADATA(${EXT_AUTHZ_NS}:${key})%`);
    }
    expect(format).toMatchObject({
      status: '%RESPONSE_CODE%',
      duration_ms: '%DURATION%',
      bytes_received: '%BYTES_RECEIVED%',
      bytes_sent: '%BYTES_SENT%',
      request_id: '%REQ(X-REQUEST-ID)%',
    });
    const everyLogText = JSON.stringify(logs).toLowerCase();
    for (const secret of ['authorization', 'x-api-key', 'cookie', ':path', 'x-envoy-original-path', 'query_param']) {
      expect(everyLogText).not.toContain(secret);
    }
  });

  it('streams access logs over gRPC to extproc as `voicegate`, with the trace and provider ids but no credential header', () => {
    const logs = hcm['access_log'] as { name: string; typed_config: Obj }[];
    const grpc = logs.find((l) => l.name === 'envoy.access_loggers.http_grpc')!;
    expect(grpc.typed_config['@type']).toBe(
      'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig',
    );
    expect(grpc.typed_config['common_config']).toMatchObject({
      log_name: 'voicegate',
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: 'extproc' } },
    });
    expect(grpc.typed_config['additional_request_headers_to_log']).toEqual(['traceparent']);
    expect(grpc.typed_config['additional_response_headers_to_log']).toEqual(['x-request-id']);
    const logged = JSON.stringify(grpc.typed_config).toLowerCase();
    for (const secret of ['authorization', 'x-api-key', 'cookie']) expect(logged).not.toContain(secret);
  });

  it('reaches extproc:50051 over HTTP/2 with gRPC health checks', () => {
    const extproc = cluster(config, 'extproc');
    expect(extproc['type']).toBe('STRICT_DNS');
    expect(at(extproc, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions', 'explicit_http_config')).toHaveProperty('http2_protocol_options');
    expect(at(extproc, 'health_checks', 0, 'grpc_health_check')).toEqual({});
    expect(at(extproc, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address')).toEqual({
      address: 'extproc',
      port_value: 50051,
    });
    expect(extproc['connect_timeout']).toBeDefined();
  });

  it('authenticates to extproc with a client certificate and verifies that the server is `extproc` (mutual TLS)', () => {
    const tls = at(cluster(config, 'extproc'), 'transport_socket') as Obj;
    expect(tls['name']).toBe('envoy.transport_sockets.tls');
    const ctx = tls['typed_config'] as Obj;
    expect(ctx['@type']).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
    expect(ctx['sni']).toBe('extproc');
    expect(at(ctx, 'common_tls_context', 'alpn_protocols')).toEqual(['h2']);
    expect(at(ctx, 'common_tls_context', 'tls_certificates')).toEqual([
      { certificate_chain: { filename: '/etc/envoy/tls/client.crt' }, private_key: { filename: '/etc/envoy/tls/client.key' } },
    ]);
    expect(at(ctx, 'common_tls_context', 'validation_context')).toEqual({
      trusted_ca: { filename: '/etc/envoy/tls/ca.crt' },
      match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'extproc' } }],
    });
  });

  it('speaks HTTP/1.1 (never h2) to the provider, so upgrades pass', () => {
    const upstream = cluster(config, 'smallest');
    const http = at(upstream, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions') as Obj;
    expect(at(http, 'explicit_http_config')).toEqual({ http_protocol_options: {} });
    expect(upstream['type']).toBe('LOGICAL_DNS');
    expect(upstream['dns_lookup_family']).toBe('V4_PREFERRED');
  });

  it('/healthz answers 200 itself with ext_authz and ext_proc disabled', () => {
    const healthz = routes(config)[0]!;
    expect(healthz.match).toEqual({ path: '/healthz' });
    expect(healthz.direct_response?.status).toBe(200);
    expect(healthz.typed_per_filter_config).toEqual({
      'envoy.filters.http.ext_authz': {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute',
        disabled: true,
      },
      'envoy.filters.http.ext_proc': {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
        disabled: true,
      },
    });
  });

  it('every proxied route targets cluster smallest with auto_host_rewrite, but TTS WebSockets go to the edge unchanged', () => {
    // The voicegate edge checks each TTS frame's model (Envoy cannot see frames); it takes public paths.
    const edge = new Set(['tts-ws', 'tts-live-ws']);
    for (const r of routes(config).slice(1)) {
      if (edge.has(r.name ?? '')) {
        expect(r.route, r.name).toMatchObject({ cluster: 'voicegate_edge' });
        expect(r.route, r.name).not.toHaveProperty('auto_host_rewrite');
        expect(r.route?.regex_rewrite, r.name).toBeUndefined();
      } else {
        expect(r.route, r.name).toMatchObject({ cluster: 'smallest', auto_host_rewrite: true });
      }
    }
  });
});

describe('envoy.yaml verifies api.smallest.ai over TLS', () => {
  it('sends SNI, checks the SAN and trusts the system CA bundle', () => {
    const tls = cluster(readYaml('envoy/envoy.yaml'), 'smallest')['transport_socket'] as Obj;
    expect(tls['name']).toBe('envoy.transport_sockets.tls');
    const ctx = tls['typed_config'] as Obj;
    expect(ctx['@type']).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
    expect(ctx['sni']).toBe('api.smallest.ai');
    expect(at(ctx, 'common_tls_context', 'alpn_protocols')).toEqual(['http/1.1']);
    expect(at(ctx, 'common_tls_context', 'validation_context')).toEqual({
      trusted_ca: { filename: '/etc/ssl/certs/ca-certificates.crt' },
      match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'api.smallest.ai' } }],
    });
    expect(
      at(cluster(readYaml('envoy/envoy.yaml'), 'smallest'), 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address'),
    ).toEqual({ address: 'api.smallest.ai', port_value: 443 });
  });
});
