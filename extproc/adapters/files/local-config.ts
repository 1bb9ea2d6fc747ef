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

/** Throws a {@link ConfigError} listing every problem of the file. */
export async function loadLocalConfigFile(path: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<LocalConfig> {
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
  const parsed = parseLocalConfig(yaml.toJS());
  if (!parsed.ok) throw new ConfigError(origin, parsed.issues);
  const baseDir = dirname(abs);
  return { doc: parsed.doc, origin, resolveSecret: (ref) => resolveSecret(ref, baseDir, env) };
}
