import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { RouteEntry } from './route-picker.ts';

/** Repository root, from this file's location. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The two Envoy configs the repo ships. */
export const ENVOY_FILES = ['envoy/envoy.yaml', 'envoy/envoy.local.yaml'] as const;

/** Parses a YAML file of the repo into plain data. */
export function readYaml(relativePath: string): unknown {
  return parse(readFileSync(new URL(relativePath, `file://${REPO_ROOT}`), 'utf8'));
}

type Obj = Record<string, unknown>;

/** Indexing into parsed YAML without `any`: throws with the path when a step is missing. */
export function at(value: unknown, ...steps: (string | number)[]): unknown {
  let current = value;
  for (const step of steps) {
    if (current === null || typeof current !== 'object') throw new Error(`no ${steps.join('.')} (stopped at ${step})`);
    current = (current as Obj)[step as string];
  }
  return current;
}

/** The HttpConnectionManager of listener 0. */
export function connectionManager(config: unknown): Obj {
  return at(config, 'static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config') as Obj;
}

/** The HTTP filters in order. */
export function httpFilters(config: unknown): { name: string; typed_config: Obj }[] {
  return connectionManager(config)['http_filters'] as { name: string; typed_config: Obj }[];
}

/** The routes of the single virtual host, in order. */
export function routes(config: unknown): RouteEntry[] {
  return at(connectionManager(config), 'route_config', 'virtual_hosts', 0, 'routes') as RouteEntry[];
}

/** A cluster by name. */
export function cluster(config: unknown, name: string): Obj {
  const found = (at(config, 'static_resources', 'clusters') as Obj[]).find((c) => c['name'] === name);
  if (!found) throw new Error(`no cluster ${name}`);
  return found;
}
