/**
 * The pod's own file in control-plane mode: identity, providers, CORS and limits, with accounts
 * and models refused (they come from the control plane). Read and validated before any listener
 * opens; its `file:`/`env:` references resolve against the file's folder, as in file mode.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { SecretResult } from '../../core/config/compile.ts';
import { ConfigError } from '../../core/config/errors.ts';
import { parseLocalConfig, type LocalConfigDocument } from '../../core/control/compile-data-plane.ts';
import { resolveSecret } from './secrets.ts';

export interface LocalConfig {
  readonly doc: LocalConfigDocument;
  /** `file:/abs/path` of the file. */
  readonly origin: string;
  readonly resolveSecret: (ref: string) => Promise<SecretResult>;
}

/** A config file read and parsed as YAML: its absolute path, `file:` origin, text and value. */
export interface YamlConfigFile {
  readonly abs: string;
  readonly origin: string;
  readonly text: string;
  readonly value: unknown;
}

/** Reads `path` as YAML (duplicate keys refused); throws a {@link ConfigError} when it cannot. */
export async function readYamlConfigFile(path: string): Promise<YamlConfigFile> {
  const abs = resolve(path);
  const origin = `file:${abs}`;
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(abs, [{ path: '', message: `cannot read config file (${code})` }], { cause: err });
  }
  const yaml = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (yaml.errors.length > 0) {
    throw new ConfigError(origin, yaml.errors.map((e) => ({ path: '', message: `YAML: ${(e.message.split('\n')[0] ?? e.message).replace(/:$/, '')}` })));
  }
  return { abs, origin, text, value: yaml.toJS() };
}

/** The local sections of a file's `value`; throws a {@link ConfigError} listing every problem. */
export function localConfigOf(file: Pick<YamlConfigFile, 'abs' | 'origin'>, value: unknown, env: Readonly<Record<string, string | undefined>>): LocalConfig {
  const parsed = parseLocalConfig(value);
  if (!parsed.ok) throw new ConfigError(file.origin, parsed.issues);
  const baseDir = dirname(file.abs);
  return { doc: parsed.doc, origin: file.origin, resolveSecret: (ref) => resolveSecret(ref, baseDir, env) };
}

/** Throws a {@link ConfigError} listing every problem of the file. */
export async function loadLocalConfigFile(path: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<LocalConfig> {
  const file = await readYamlConfigFile(path);
  return localConfigOf(file, file.value, env);
}
