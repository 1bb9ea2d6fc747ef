/**
 * Development-only wiring: what `voicegate` gains when the simulator is installed beside it — the
 * `voicegate simulator` command and the upstream `voicegate start` runs for a loopback config.
 * bin/voicegate.js imports this file if it exists; the gateway under extproc/ never imports the
 * simulator, so an image can leave both out.
 */
import type { MainExtensions } from '../extproc/main/extensions.ts';
import { SIMULATOR_SUMMARY, SIMULATOR_SYNOPSIS, simulatorCommand } from '../simulator/command.ts';
import { startSimulator } from '../simulator/server.ts';

export const extensions: MainExtensions = {
  commands: {
    simulator: {
      summary: SIMULATOR_SUMMARY,
      usage: `usage: voicegate simulator ${SIMULATOR_SYNOPSIS}\n\n${SIMULATOR_SUMMARY}\n`,
      run: (args, signal) => simulatorCommand(args, { signal }),
    },
  },
  upstreamSimulator: {
    start: (opts) => startSimulator({ host: opts.host, port: opts.port, profile: opts.profile, accounts: opts.accounts }),
  },
};
