/**
 * The file source of configuration: reads YAML, validates it, compiles a snapshot. Throws a
 * {@link ConfigError} listing every problem; callers must not open a listener before this resolves.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { compileConfig } from '../../core/config/compile.ts';
import { ConfigError, formatPath, type ConfigIssue } from '../../core/config/errors.ts';
import { configDocument } from '../../core/config/schema.ts';
import { resolveSecret } from './secrets.ts';
import type { Snapshot } from '../../core/config/snapshot.ts';

export interface LoadOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Snapshot version to stamp; defaults to the load time in ms, so later loads are newer. */
  readonly version?: number;
}

export async function loadSnapshotFromFile(path: string, opts: LoadOptions = {}): Promise<Snapshot> {
  const abs = resolve(path);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(abs, [{ path: '', message: `cannot read config file (${code})` }], { cause: err });
  }
  return loadSnapshotFromText(text, { ...opts, origin: `file:${abs}`, baseDir: dirname(abs) });
}

export async function loadSnapshotFromText(
  text: string,
  opts: LoadOptions & { origin: string; baseDir: string },
): Promise<Snapshot> {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      opts.origin,
      // prettyErrors appends a code frame after "line L, column C:"; keep the location, drop the frame.
      doc.errors.map((e) => ({ path: '', message: `YAML: ${(e.message.split('\n')[0] ?? e.message).replace(/:$/, '')}` })),
    );
  }
  const parsed = configDocument.safeParse(doc.toJS());
  if (!parsed.success) {
    const issues: ConfigIssue[] = parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
    throw new ConfigError(opts.origin, issues);
  }
  const compiled = await compileConfig(parsed.data, {
    resolveSecret: (ref) => resolveSecret(ref, opts.baseDir, opts.env ?? process.env),
    origin: opts.origin,
    version: opts.version ?? Date.now(),
  });
  if (!compiled.ok) throw new ConfigError(opts.origin, compiled.issues);
  return compiled.snapshot;
}
