#!/usr/bin/env node
// The simulator of api.smallest.ai as its own program; SIGINT/SIGTERM stop it, a second one at once.
import { register } from 'tsx/esm/api';

register();
const { simulatorCli } = await import('../simulator/cli.ts');
const controller = new AbortController();
const onSignal = (signal) => {
  if (controller.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
  controller.abort(signal);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.exitCode = await simulatorCli(process.argv.slice(2), controller.signal);
