/**
 * Reads a command line against an option schema: flags, then their environment variables, then
 * the defaults, all validated at once so a user sees every mistake in one line.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Flag, FlagSchema, Parsed } from './flags.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export type ParseResult<S extends FlagSchema> = { ok: true; value: Parsed<S> } | { ok: false; error: string };

export function parseOptions<S extends FlagSchema>(schema: S, args: readonly string[], env: Env): ParseResult<S> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const f of Object.values(schema)) options[f.flag] = { type: f.value === undefined ? 'boolean' : 'string', multiple: f.multiple ?? false };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  const errors: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, f] of Object.entries(schema)) {
    const raw = values[f.flag] ?? fromEnv(f, env);
    if (raw === undefined) {
      if (f.required) errors.push(`--${f.flag} is required${f.env ? ` (or set ${f.env})` : ''}`);
      else out[key] = f.fallback;
      continue;
    }
    const parsed = f.schema.safeParse(raw);
    if (parsed.success) out[key] = parsed.data;
    else errors.push(`--${f.flag} ${parsed.error.issues.map((i) => i.message).join(', ')}`);
  }
  return errors.length > 0 ? { ok: false, error: errors.join('; ') } : { ok: true, value: out as Parsed<S> };
}

function fromEnv(f: Flag<unknown>, env: Env): unknown {
  const text = f.env ? env[f.env] : undefined;
  if (text === undefined || text === '') return undefined;
  return f.multiple ? [text] : text;
}

/** `--port PORT`, `[--team TEAM]…` */
function synopsisOf(f: Flag<unknown>): string {
  const word = f.value === undefined ? `--${f.flag}` : `--${f.flag} ${f.value}`;
  return f.required ? word : `[${word}]${f.multiple ? '…' : ''}`;
}

/** The usage text of one command, generated from its schema. */
export function usageText(command: string, summary: string, schema: FlagSchema): string {
  const flags = Object.values(schema);
  const left = flags.map((f) => (f.value === undefined ? `--${f.flag}` : `--${f.flag} ${f.value}`));
  const width = Math.max(...left.map((l) => l.length));
  const lines = flags.map((f, i) => {
    const notes = [
      f.required ? 'required' : undefined,
      f.fallback !== undefined && !(Array.isArray(f.fallback) && f.fallback.length === 0) && f.fallback !== false ? `default ${String(f.fallback)}` : undefined,
      f.env ? `env ${f.env}` : undefined,
    ].filter((n) => n !== undefined);
    return `  ${left[i]!.padEnd(width)}  ${f.help}${notes.length ? ` (${notes.join('; ')})` : ''}`;
  });
  return [`usage: voicegate ${command} ${flags.map(synopsisOf).join(' ')}`, '', summary, '', 'options:', ...lines, ''].join('\n');
}
