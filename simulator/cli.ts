/**
 * `voicegate-simulator [options]`: the simulator as its own program (bin/voicegate-simulator.js),
 * with nothing of the gateway loaded.
 */
import { SIMULATOR_SUMMARY, SIMULATOR_SYNOPSIS, simulatorCommand } from './command.ts';

export const SIMULATOR_CLI_USAGE = `usage: voicegate-simulator ${SIMULATOR_SYNOPSIS}\n\n${SIMULATOR_SUMMARY}\n`;

export async function simulatorCli(args: string[], signal: AbortSignal): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(SIMULATOR_CLI_USAGE);
    return 0;
  }
  return simulatorCommand(args, { signal });
}
