/**
 * The file of `voicegate start` with the control plane embedded: one YAML document read two ways.
 * Its identity, providers, cors and limits are the pod's local sections (validated like a
 * control-plane pod's file, re-read on SIGHUP); its accounts, models and teams are only the
 * seed imported into an empty store, so they are kept as text for the apply logic to validate.
 */
import { localConfigOf, readYamlConfigFile, type LocalConfig } from './local-config.ts';

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
  const file = await readYamlConfigFile(path);
  const value = file.value;
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
  return { local: localConfigOf(file, localPart, env), text: file.text, hasSeed };
}
