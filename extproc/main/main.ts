/**
 * The composition root: every `voicegate` command, built from its option schema and its
 * components. `main` is what bin/voicegate.js calls and what the CLI tests call in process; it
 * resolves to the exit code and stops everything it started when `signal` aborts.
 *
 * @example
 * const ac = new AbortController();
 * const code = main(['edge', '--config', 'voicegate.yaml', '--port', '0'], ac.signal);
 * ac.abort(); // drains, waits --drain-delay, closes; `code` resolves to 0
 */
import type { Command, RunContext } from './command.ts';
import { adminCommand } from './commands/admin.ts';
import { aggregatorCommand } from './commands/aggregator.ts';
import { applyCommand } from './commands/apply.ts';
import { certsCommand } from './commands/certs.ts';
import { controlCommand } from './commands/control.ts';
import { edgeCommand } from './commands/edge.ts';
import { extprocCommand } from './commands/extproc.ts';
import { otelExportCommand } from './commands/otel-export.ts';
import { startCommand } from './commands/start.ts';
import { tokenCommand } from './commands/token.ts';
import { usageCommand } from './commands/usage.ts';
import type { ExtensionCommand, MainExtensions } from './extensions.ts';
import { messageOf } from './lifecycle.ts';

export type { MainExtensions } from './extensions.ts';

export const COMMANDS: Readonly<Record<string, Command>> = {
  start: startCommand,
  extproc: extprocCommand,
  edge: edgeCommand,
  token: tokenCommand,
  certs: certsCommand,
  aggregator: aggregatorCommand,
  'otel-export': otelExportCommand,
  usage: usageCommand,
  control: controlCommand,
  admin: adminCommand,
  apply: applyCommand,
};

function fromExtension(ext: ExtensionCommand): Command {
  return { summary: ext.summary, usage: () => ext.usage, run: (args, ctx) => ext.run(args, ctx.signal) };
}

/** Built-in commands plus those of `ext`, in the order `--help` lists them. */
export function commands(ext: MainExtensions = {}): Record<string, Command> {
  const extra = Object.fromEntries(Object.entries(ext.commands ?? {}).map(([k, v]) => [k, fromExtension(v)]));
  return { ...COMMANDS, ...extra };
}

export function helpText(all: Readonly<Record<string, Command>> = COMMANDS): string {
  const width = Math.max(...Object.keys(all).map((k) => k.length));
  return [
    'voicegate — governance gateway for voice AI APIs',
    '',
    'usage: voicegate <command> [options]',
    '',
    ...Object.entries(all).map(([k, v]) => `  ${k.padEnd(width)}  ${v.summary}`),
    '',
    "Run `voicegate <command> --help` for a command's options.",
    '',
  ].join('\n');
}

export async function main(args: string[], signal: AbortSignal, ext: MainExtensions = {}): Promise<number> {
  const stdout = ext.stdout ?? ((s: string) => void process.stdout.write(s));
  const stderr = ext.stderr ?? ((s: string) => void process.stderr.write(s));
  const all = commands(ext);
  const [name, ...rest] = args;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    stdout(helpText(all));
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(all, name) ? all[name] : undefined;
  if (!command) {
    stderr(`voicegate: unknown command "${name}"\n\n${helpText(all)}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    stdout(command.usage(name));
    return 0;
  }
  const ctx: RunContext = { name, signal, env: ext.env ?? process.env, ext, stdout, stderr };
  try {
    return await command.run(rest, ctx);
  } catch (err) {
    // Commands report what they expect; this is the one line for what they did not.
    stderr(`voicegate ${name}: ${messageOf(err)}\n`);
    return 1;
  }
}
