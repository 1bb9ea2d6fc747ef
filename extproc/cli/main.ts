/**
 * The `voicegate` command line: one entry per component, each a function of its arguments that
 * resolves to an exit code, so every command can be run and tested in process.
 */
import { edgeCommand } from '../edge/command.ts';
import { aggregatorCommand, otelExportCommand, usageCommand } from '../usage/commands.ts';
import { simulatorCommand } from '../../simulator/command.ts';
import { extprocCommand } from './extproc-command.ts';
import { startCommand } from './start-command.ts';
import { tokenCommand } from './token-command.ts';

export const COMMANDS: Readonly<Record<string, { run: (args: string[]) => Promise<number>; help: string }>> = {
  start: { run: (a) => startCommand(a), help: 'simulator + decision service + edge in one process (what `npm start` runs)' },
  extproc: { run: (a) => extprocCommand(a), help: "the gRPC service Envoy calls: ext_authz Check, ext_proc, access logs, health" },
  edge: { run: (a) => edgeCommand(a), help: 'the embedded data plane (Envoy\'s job where there is no Envoy)' },
  simulator: { run: (a) => simulatorCommand(a), help: 'a local simulator of api.smallest.ai' },
  token: { run: (a) => tokenCommand(a), help: 'print a development JWT signed with the config\'s dev key' },
  aggregator: { run: (a) => aggregatorCommand(a), help: 'consume usage spans from NATS into PostgreSQL roll-ups' },
  'otel-export': { run: (a) => otelExportCommand(a), help: 'consume usage spans from NATS and export them over OTLP' },
  usage: { run: (a) => usageCommand(a), help: 'print usage and cost roll-ups from PostgreSQL' },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'voicegate — governance gateway for voice AI APIs',
    '',
    'usage: voicegate <command> [options]',
    '',
    ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(width)}  ${v.help}`),
    '',
    'Run `voicegate <command> --help` for a command\'s options.',
    '',
  ].join('\n');
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(helpText());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n\n${helpText()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    // Each command prints its usage line on an argument error; --help is such a request.
    return command.run(['--help']);
  }
  return command.run(rest);
}
