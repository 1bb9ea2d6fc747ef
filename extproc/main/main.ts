/**
 * The `voicegate` command line: one entry per component, each a function of its arguments that
 * resolves to an exit code, so every command can be run and tested in process.
 */
import { edgeCommand } from './commands/edge.ts';
import { aggregatorCommand, otelExportCommand, usageCommand } from './commands/usage.ts';
import { simulatorCommand } from '../../simulator/command.ts';
import { extprocCommand } from './commands/extproc.ts';
import { startCommand } from './commands/start.ts';
import { tokenCommand } from './commands/token.ts';

interface Command {
  readonly run: (args: string[]) => Promise<number>;
  /** One-line summary for `voicegate --help`. */
  readonly help: string;
  /** Options, for `voicegate <command> --help`. */
  readonly synopsis: string;
}

export const COMMANDS: Readonly<Record<string, Command>> = {
  start: {
    run: (a) => startCommand(a),
    help: 'simulator + decision service + edge in one process (what `npm start` runs)',
    synopsis: '[--config FILE] [--host 127.0.0.1] [--port 8080] [--grpc-port 50051] [--http-port 8081] [--simulator auto|off] [--profile realistic|instant] [--spool-dir .voicegate]',
  },
  extproc: {
    run: (a) => extprocCommand(a),
    help: 'the gRPC service Envoy calls: ext_authz Check, ext_proc, access logs, health',
    synopsis: '--config FILE [--host 0.0.0.0] [--port 50051] [--http-port 9464] [--spool-dir DIR]',
  },
  edge: {
    run: (a) => edgeCommand(a),
    help: "the embedded data plane (Envoy's job where there is no Envoy)",
    synopsis: '--config FILE [--host 0.0.0.0] [--port 8080] [--authz inproc|grpc://host:port] [--http-port 9465] [--spool-dir DIR]',
  },
  simulator: {
    run: (a) => simulatorCommand(a),
    help: 'a local simulator of api.smallest.ai',
    synopsis: '[--port 7070] [--host 127.0.0.1] [--profile instant|realistic] [--key KEY[:UNITS]]… [--config FILE] [--ws-per-unit N] [--allow-query-token]',
  },
  token: {
    run: (a) => tokenCommand(a),
    help: "print a development JWT signed with the config's dev key",
    synopsis: '--config FILE --user USER [--team TEAM]… [--role ROLE]… [--ttl 1h]',
  },
  aggregator: {
    run: (a) => aggregatorCommand(a),
    help: 'consume usage spans from NATS into PostgreSQL roll-ups',
    synopsis: '[--nats URL] [--database URL] [--stream NAME] [--subject-prefix P] [--durable NAME] [--batch N] [--ack-wait MS]',
  },
  'otel-export': {
    run: (a) => otelExportCommand(a),
    help: 'consume usage spans from NATS and export them over OTLP',
    synopsis: '[--nats URL] [--endpoint URL] [--stream NAME] [--subject-prefix P] [--durable NAME]',
  },
  usage: {
    run: (a) => usageCommand(a),
    help: 'print usage and cost roll-ups from PostgreSQL',
    synopsis: '[--by user|team|model|account] [--since ISO|7d] [--json] [--database URL]',
  },
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
    process.stdout.write(`usage: voicegate ${name} ${command.synopsis}\n\n${command.help}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // Commands validate their own arguments; this catches what slipped through (node:util
    // parseArgs errors) so the user sees one line and the synopsis, never a stack trace.
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`voicegate ${name}: ${e.message}\nusage: voicegate ${name} ${command.synopsis}\n`);
      return 2;
    }
    process.stderr.write(`voicegate ${name}: ${e.message}\n`);
    return 1;
  }
}
