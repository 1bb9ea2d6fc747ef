/**
 * Loads Envoy's own API protos (and gRPC health) from the `@grpc/grpc-js-xds` package, which ships
 * Envoy's proto tree under `deps/`. Nothing is copied into this repo, so the wire contract is always
 * exactly Envoy's.
 */
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type * as protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** The four include roots Envoy's protos import from. */
export function envoyIncludeDirs(): string[] {
  const pkg = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(pkg, 'deps', d));
}

/** Loader options that match how Envoy's messages are read and written throughout voicegate. */
export const ENVOY_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

const SERVICE_FILES = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ext_proc/v3/external_processor.proto',
  'envoy/service/accesslog/v3/als.proto',
];

let cached: grpc.GrpcObject | undefined;

/**
 * The grpc-js package object holding `envoy.service.auth.v3.Authorization`,
 * `envoy.service.ext_proc.v3.ExternalProcessor`, `envoy.service.accesslog.v3.AccessLogService`
 * and `grpc.health.v1.Health`. Loaded once per process (parsing takes ~100 ms).
 */
export function loadEnvoyProtos(): grpc.GrpcObject {
  if (cached) return cached;
  const definition = protoLoader.loadSync(SERVICE_FILES, {
    ...ENVOY_LOADER_OPTIONS,
    includeDirs: envoyIncludeDirs(),
  });
  const health = protoLoader.loadSync(join(import.meta.dirname, 'health.proto'), ENVOY_LOADER_OPTIONS);
  cached = grpc.loadPackageDefinition({ ...definition, ...health });
  return cached;
}

/** Looks up a nested name such as `envoy.service.auth.v3.Authorization` in a package object. */
export function lookup<T>(pkg: grpc.GrpcObject, dotted: string): T {
  let node: unknown = pkg;
  for (const part of dotted.split('.')) {
    node = (node as Record<string, unknown> | undefined)?.[part];
    if (node === undefined) throw new Error(`proto name not found: ${dotted}`);
  }
  return node as T;
}

// The protobufjs copy @grpc/proto-loader itself uses, so both read the protos the same way
// (including the well-known types proto-loader registers with it).
const protobufjs = createRequire(require.resolve('@grpc/proto-loader'))('protobufjs') as typeof protobuf;

let cachedRoot: protobuf.Root | undefined;

/**
 * The same Envoy protos as {@link loadEnvoyProtos}, as a protobufjs Root, for hot paths that encode
 * and decode with `Type.encode`/`Type.decode` (or read the wire directly) instead of proto-loader's
 * generic object conversion. Field names keep their proto case, like proto-loader's `keepCase`.
 */
export function loadEnvoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  loadEnvoyProtos(); // registers proto-loader's extra well-known types with protobufjs
  const root = new protobufjs.Root();
  const dirs = envoyIncludeDirs();
  const fallback = root.resolvePath.bind(root);
  root.resolvePath = (origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of dirs) {
      const full = join(dir, target);
      try {
        accessSync(full, constants.R_OK);
        return full;
      } catch {
        // not in this include dir
      }
    }
    return fallback(origin, target);
  };
  root.loadSync(['envoy/service/auth/v3/external_auth.proto'], { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}
