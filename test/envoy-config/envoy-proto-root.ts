import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

/**
 * Where Envoy's API protos and their imports live: the four folders @grpc/grpc-js-xds ships, then
 * protobufjs's own folder for `google/protobuf/descriptor.proto` (the PGV and udpa option
 * extensions import it; the other well-known types are built into protobufjs).
 */
export const ENVOY_INCLUDE_DIRS: readonly string[] = [
  ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDeps, d)),
  dirname(require.resolve('protobufjs/package.json')),
];

/** `type.googleapis.com/envoy.x.v3.Foo` → `envoy.x.v3.Foo`. */
export function typeNameFromUrl(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

function resolveInclude(target: string): string {
  if (isAbsolute(target)) return target;
  for (const dir of ENVOY_INCLUDE_DIRS) {
    const candidate = join(dir, target);
    if (existsSync(candidate)) return candidate;
  }
  return target;
}

/**
 * A protobufjs Root that resolves imports across the include folders, keeping the .proto field
 * names (snake_case), as Envoy's YAML uses them.
 */
export function createEnvoyRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolveInclude(target);
  return root;
}

/** Loads .proto files (paths relative to the include folders) into `root` and resolves all types. */
export async function loadProtoFiles(root: protobuf.Root, files: readonly string[]): Promise<void> {
  if (files.length === 0) return;
  await root.load([...files], { keepCase: true });
  root.resolveAll();
}

function lookupMessage(root: protobuf.Root, name: string): protobuf.Type | null {
  try {
    return root.lookupType(name);
  } catch {
    return null;
  }
}

/**
 * Makes the message type named by an `Any` type URL available, loading every .proto in the folder
 * its package maps to (Envoy's layout: package `envoy.a.b.v3` lives in `envoy/a/b/v3/`). Returns
 * null when no such type exists, which is what an unknown `@type` in a config is.
 */
export async function ensureTypeForUrl(root: protobuf.Root, typeUrl: string): Promise<protobuf.Type | null> {
  const name = typeNameFromUrl(typeUrl);
  const known = lookupMessage(root, name);
  if (known) return known;
  const packagePath = name.split('.').slice(0, -1).join('/');
  const files = ENVOY_INCLUDE_DIRS.flatMap((dir) => {
    const folder = join(dir, packagePath);
    if (!existsSync(folder)) return [];
    return readdirSync(folder)
      .filter((f) => f.endsWith('.proto'))
      .map((f) => `${packagePath}/${f}`);
  });
  await loadProtoFiles(root, files);
  return lookupMessage(root, name);
}

/** Every `@type` URL anywhere in a parsed YAML/JSON document. */
export function collectTypeUrls(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) collectTypeUrls(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (key === '@type' && typeof item === 'string') into.add(item);
      else collectTypeUrls(item, into);
    }
  }
  return into;
}

/**
 * Loads the bootstrap proto plus every type a config's `@type` URLs name, so the strict checker can
 * run synchronously. Unknown URLs are left for the checker to report with their path.
 */
export async function loadRootForConfig(config: unknown): Promise<protobuf.Root> {
  const root = createEnvoyRoot();
  await loadProtoFiles(root, ['envoy/config/bootstrap/v3/bootstrap.proto']);
  for (const url of collectTypeUrls(config)) await ensureTypeForUrl(root, url);
  return root;
}
