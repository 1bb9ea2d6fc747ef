/**
 * A command: its option schema, and what it does with the parsed options. The usage text and the
 * argument errors come from the schema, the same for every command.
 */
import type { FlagSchema, Parsed } from './flags.ts';
import type { MainExtensions } from './extensions.ts';
import { parseOptions, usageText, type Env } from './parse.ts';
import { loadSnapshotFromFile } from '../adapters/files/config-file.ts';
import type { Snapshot } from '../core/config/snapshot.ts';
import { runComponents, type Component } from './lifecycle.ts';

export interface RunContext {
  readonly name: string;
  readonly signal: AbortSignal;
  readonly env: Env;
  readonly ext: MainExtensions;
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface Command {
  readonly summary: string;
  /** Absent for extension commands, which parse their own arguments. */
  readonly options?: FlagSchema;
  usage(name: string): string;
  run(args: string[], ctx: RunContext): Promise<number>;
}

export function defineCommand<S extends FlagSchema>(summary: string, options: S, run: (opts: Parsed<S>, ctx: RunContext) => Promise<number>): Command {
  return {
    summary,
    options,
    usage: (name) => usageText(name, summary, options),
    async run(args, ctx) {
      const parsed = parseOptions(options, args, ctx.env);
      if (!parsed.ok) {
        ctx.stderr(`voicegate ${ctx.name}: ${parsed.error}\n${usageText(ctx.name, summary, options).split('\n', 1)[0]}\n`);
        return 2;
      }
      return run(parsed.value, ctx);
    },
  };
}

/** Writes one `voicegate <command>: …` line. */
export function report(ctx: RunContext, line: string): void {
  ctx.stderr(`voicegate ${ctx.name}: ${line}\n`);
}

/** The snapshot of `path`, or undefined once every problem of the file is on stderr. */
export async function loadConfig(ctx: RunContext, path: string): Promise<Snapshot | undefined> {
  try {
    return await loadSnapshotFromFile(path, { env: ctx.env });
  } catch (err) {
    report(ctx, (err as Error).message);
    return undefined;
  }
}

/** Runs `components` until the command's signal aborts; see lifecycle.ts. */
export function serve(ctx: RunContext, components: readonly Component[], drainDelayMs: number, onReady?: () => void | Promise<void>): Promise<number> {
  return runComponents(components, { signal: ctx.signal, drainDelayMs, report: (line) => report(ctx, line), ...(onReady ? { onReady } : {}) });
}

/** A component that only releases something at the end. */
export function closing(name: string, close: () => Promise<void> | void): Component {
  return { name, start: async () => {}, drain() {}, close: async () => close() };
}
