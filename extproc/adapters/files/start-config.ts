/**
 * The file of `voicegate start` with the control plane embedded: one YAML document read two ways.
 * Its identity, providers, cors and limits are the pod's local sections (validated like a
 * control-plane pod's file, re-read on SIGHUP); its accounts, models and teams are only the
 * seed imported into an empty store, so they are kept as text for the apply logic to validate.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from '../../core/config/errors.ts';
import { parseLocalConfig } from '../../core/control/compile-data-plane.ts';
import type { LocalConfig } from './local-config.ts';
import { resolveSecret } from './secrets.ts';

/** Sections the control store owns once it exists; the file's copy is only a first-start seed. */
export const SEED_SECTIONS = ['accounts', 'models', 'teams'] as const;

export interface StartConfigFile {
  readonly local: LocalConfig;
  /** The whole file, for `parseApplyDocument` on the first start. */
  readonly text: string;
  /** Whether the file has any seed section (accounts, models, teams). */
  readonly hasSeed: boolean;
}

/** Throws a {@link ConfigError} listing every problem of the file's local sections. */
export async function loadStartConfigFile(path: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<StartConfigFile> {
  const abs = resolve(path);
  const origin = `file:${abs}`;
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(abs, [{ path: '', message: `cannot read config file (${(err as NodeJS.ErrnoException).code ?? 'error'})` }], { cause: err });
  }
  const yaml = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (yaml.errors.length > 0) {
    throw new ConfigError(origin, yaml.errors.map((e) => ({ path: '', message: `YAML: ${(e.message.split('\n')[0] ?? e.message).replace(/:$/, '')}` })));
  }
  const value: unknown = yaml.toJS();
  let hasSeed = false;
  let localPart = value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const rest: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const key of SEED_SECTIONS) {
      if (key in rest) hasSeed = true;
      delete rest[key];
    }
    localPart = rest;
  }
  const parsed = parseLocalConfig(localPart);
  if (!parsed.ok) throw new ConfigError(origin, parsed.issues);
  const baseDir = dirname(abs);
  return { local: { doc: parsed.doc, origin, resolveSecret: (ref) => resolveSecret(ref, baseDir, env) }, text, hasSeed };
}
