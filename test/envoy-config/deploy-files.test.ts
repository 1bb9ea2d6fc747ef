import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { at, cluster, readYaml, REPO_ROOT } from './envoy-files.ts';

/** The subcommands `voicegate` (bin/voicegate.js) offers. */
const SUBCOMMANDS = new Set(['extproc', 'edge', 'simulator', 'aggregator', 'otel-export', 'start', 'token', 'usage', 'certs']);

/** architecture.md's default ports. */
const PORTS = { public: 8080, extproc: 50051, simulator: 7070, nats: 4222, postgres: 5432 };

type Obj = Record<string, unknown>;

interface ComposeService {
  image?: string;
  build?: string;
  command?: string[];
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
}

const read = (file: string): string => readFileSync(join(REPO_ROOT, file), 'utf8');
// Compose honours YAML merge keys (`<<: *voicegate`); the `yaml` package needs them switched on.
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;

function flagValue(args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i === -1 ? undefined : args[i + 1];
}

describe('docker-compose.yml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['aggregator', 'certs', 'edge', 'envoy', 'extproc', 'nats', 'otel-collector', 'otel-export', 'postgres', 'simulator'].sort(),
    );
  });

  it('starts every voicegate service with an existing CLI subcommand, from the repo image', () => {
    const ours = Object.entries(services).filter(([, s]) => s.build === '.');
    expect(ours.map(([name]) => name).sort()).toEqual(['aggregator', 'certs', 'edge', 'extproc', 'otel-export', 'simulator']);
    for (const [name, s] of ours) {
      expect(SUBCOMMANDS.has(s.command?.[0] ?? ''), `${name}: ${s.command?.join(' ')}`).toBe(true);
      expect(s.environment).toMatchObject({
        NATS_URL: `nats://nats:${PORTS.nats}`,
        DATABASE_URL: `postgres://postgres@postgres:${PORTS.postgres}/voicegate`,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318',
      });
    }
    expect(services['extproc']?.command).toEqual([
      'extproc', '--config', '/config/voicegate.yaml', '--host', '0.0.0.0', '--port', String(PORTS.extproc),
      '--tls-cert', '/certs/server.crt', '--tls-key', '/certs/server.key', '--tls-ca', '/certs/ca.crt',
    ]);
    // The certificates come from `voicegate certs` into the volume extproc and Envoy mount.
    expect(services['certs']?.command).toEqual(['certs', '--out', '/certs', '--name', 'extproc', '--owner', '1000:1000']);
    expect(services['extproc']?.volumes).toContain('certs:/certs:ro');
    expect(services['envoy']?.volumes).toContain('certs:/etc/envoy/tls:ro');
    const sim = services['simulator']!.command!;
    expect(sim[0]).toBe('simulator');
    expect(flagValue(sim, '--port')).toBe(String(PORTS.simulator));
    expect(flagValue(sim, '--host')).toBe('0.0.0.0');
  });

  it('mounts only files that exist in the repo', () => {
    const mounts = Object.values(services).flatMap((s) => s.volumes ?? []).filter((v) => v.startsWith('./'));
    expect(mounts.length).toBeGreaterThan(0);
    for (const mount of mounts) {
      const source = mount.split(':')[0]!;
      expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
    }
  });

  it('wires Envoy to envoy.local.yaml, whose clusters name the compose services and ports', () => {
    const envoy = services['envoy']!;
    expect(envoy.image).toMatch(/^envoyproxy\/envoy:v1\.3\d/);
    const mount = envoy.volumes!.find((v) => v.startsWith('./envoy/'))!;
    expect(mount).toBe('./envoy/envoy.local.yaml:/etc/envoy/envoy.yaml:ro');
    expect(flagValue(envoy.command!, '-c')).toBe('/etc/envoy/envoy.yaml');
    expect(envoy.ports).toEqual([`${PORTS.public}:${PORTS.public}`]);

    const local = readYaml('envoy/envoy.local.yaml');
    const endpoint = (name: string): unknown =>
      at(cluster(local, name), 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address');
    expect(endpoint('smallest')).toEqual({ address: 'simulator', port_value: PORTS.simulator });
    expect(endpoint('extproc')).toEqual({ address: 'extproc', port_value: PORTS.extproc });
    expect(services['extproc']?.expose).toEqual([String(PORTS.extproc)]);
  });

  it('publishes the default ports', () => {
    expect(services['simulator']?.ports).toEqual([`${PORTS.simulator}:${PORTS.simulator}`]);
    expect(services['nats']?.ports).toEqual([`${PORTS.nats}:${PORTS.nats}`]);
    expect(services['postgres']?.ports).toEqual([`${PORTS.postgres}:${PORTS.postgres}`]);
    expect(services['nats']?.command).toContain('-js');
  });

  it('uses a compose config that differs from examples/voicegate.yaml only in the upstream', () => {
    const example = readYaml('examples/voicegate.yaml') as Obj;
    const composed = readYaml('examples/voicegate.compose.yaml') as Obj;
    expect(at(composed, 'providers', 'smallest', 'upstream')).toBe(`http://simulator:${PORTS.simulator}`);
    const withoutUpstream = (c: Obj): Obj => {
      const copy = structuredClone(c);
      delete (at(copy, 'providers', 'smallest') as Obj)['upstream'];
      return copy;
    };
    expect(withoutUpstream(composed)).toEqual(withoutUpstream(example));
  });

  it('feeds an OTel collector that receives OTLP on the exporter port and prints traces', () => {
    const otel = readYaml('deploy/otel-collector.yaml');
    expect(at(otel, 'receivers', 'otlp', 'protocols', 'http', 'endpoint')).toBe('0.0.0.0:4318');
    expect(at(otel, 'service', 'pipelines', 'traces')).toMatchObject({ receivers: ['otlp'], exporters: ['debug'] });
    expect(services['otel-collector']?.volumes).toEqual(['./deploy/otel-collector.yaml:/etc/otelcol/config.yaml:ro']);
  });
});

describe('Dockerfile', () => {
  const lines = read('Dockerfile').split('\n').map((l) => l.trim());

  it('builds on node:20-slim, installs with npm ci and runs the CLI', () => {
    expect(lines.find((l) => l.startsWith('FROM '))).toBe('FROM node:20-slim');
    expect(lines.some((l) => /^RUN npm ci\b/.test(l))).toBe(true);
    expect(lines.find((l) => l.startsWith('ENTRYPOINT '))).toBe('ENTRYPOINT ["node", "bin/voicegate.js"]');
  });

  it('copies only paths that exist, and never the host node_modules', () => {
    const sources = lines
      .filter((l) => l.startsWith('COPY '))
      .flatMap((l) => l.slice('COPY '.length).split(/\s+/).slice(0, -1));
    expect(sources).toContain('bin');
    expect(sources).toContain('extproc');
    for (const source of sources) {
      expect(source).not.toBe('.');
      expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
    }
  });
});

interface K8sDoc {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Obj;
  data?: Record<string, string>;
}

function k8s(file: string): K8sDoc[] {
  return parseAllDocuments(read(join('deploy/kubernetes', file))).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS() as K8sDoc;
  });
}

function deployment(docs: K8sDoc[], name: string): { labels: Record<string, string>; container: Obj; spec: Obj } {
  const d = docs.find((x) => x.kind === 'Deployment' && x.metadata.name === name)!;
  return {
    labels: at(d, 'spec', 'template', 'metadata', 'labels') as Record<string, string>,
    container: at(d, 'spec', 'template', 'spec', 'containers', 0) as Obj,
    spec: at(d, 'spec', 'template', 'spec') as Obj,
  };
}

function expectServiceSelects(docs: K8sDoc[], name: string, deploymentName: string, port: number): void {
  const svc = docs.find((x) => x.kind === 'Service' && x.metadata.name === name)!;
  const { labels, container } = deployment(docs, deploymentName);
  expect(labels).toMatchObject(at(svc, 'spec', 'selector') as Obj);
  const svcPort = at(svc, 'spec', 'ports', 0) as { port: number; targetPort: string };
  expect(svcPort.port).toBe(port);
  const ports = container['ports'] as { name: string; containerPort: number }[];
  expect(ports.find((p) => p.name === svcPort.targetPort)?.containerPort).toBe(port);
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  it('lists every manifest in the kustomization', () => {
    const kustomization = readYaml('deploy/kubernetes/kustomization.yaml') as { resources: string[] };
    for (const file of kustomization.resources) expect(existsSync(join(REPO_ROOT, 'deploy/kubernetes', file)), file).toBe(true);
    expect(kustomization.resources.sort()).toEqual(['aggregator.yaml', 'envoy.yaml', 'extproc.yaml']);
  });

  it('exposes extproc as the `extproc:50051` Envoy dials, gRPC health-checked', () => {
    const docs = k8s('extproc.yaml');
    expectServiceSelects(docs, 'extproc', 'extproc', PORTS.extproc);
    const { container } = deployment(docs, 'extproc');
    const args = container['args'] as string[];
    expect(SUBCOMMANDS.has(args[0]!)).toBe(true);
    expect(flagValue(args, '--port')).toBe(String(PORTS.extproc));
    // Mutual TLS on the gRPC port; the kubelet probes the side port instead.
    expect(flagValue(args, '--host')).toBe('0.0.0.0');
    expect(flagValue(args, '--tls-ca')).toBe('/tls/ca.crt');
    expect(at(container, 'readinessProbe', 'httpGet', 'path')).toBe('/readyz');
    const prodExtproc = at(cluster(readYaml('envoy/envoy.yaml'), 'extproc'), 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address');
    expect(prodExtproc).toEqual({ address: 'extproc', port_value: PORTS.extproc });
  });

  it('ships envoy/envoy.yaml verbatim in the Envoy ConfigMap, mounted where Envoy reads it', () => {
    const docs = k8s('envoy.yaml');
    const configMap = docs.find((x) => x.kind === 'ConfigMap')!;
    expect(configMap.data?.['envoy.yaml']).toBe(read('envoy/envoy.yaml'));
    const { container, spec } = deployment(docs, 'envoy');
    const args = container['args'] as string[];
    const mount = (container['volumeMounts'] as { name: string; mountPath: string }[])[0]!;
    expect(flagValue(args, '-c')).toBe(`${mount.mountPath}/envoy.yaml`);
    const volume = (spec['volumes'] as { name: string; configMap?: { name: string } }[]).find((v) => v.name === mount.name);
    expect(volume?.configMap?.name).toBe(configMap.metadata.name);
    expect(at(container, 'readinessProbe', 'httpGet', 'path')).toBe('/healthz');
    expectServiceSelects(docs, 'envoy', 'envoy', PORTS.public);
  });

  it('runs the aggregator with NATS and PostgreSQL settings', () => {
    const { container } = deployment(k8s('aggregator.yaml'), 'aggregator');
    expect(container['args']).toEqual(['aggregator']);
    const env = (container['env'] as { name: string }[]).map((e) => e.name);
    expect(env).toEqual(expect.arrayContaining(['NATS_URL', 'DATABASE_URL']));
  });
});
