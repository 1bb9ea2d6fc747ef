#!/usr/bin/env node
// The published entry point: signals and the exit code, nothing else. Sources are TypeScript run
// through tsx's loader, so the repo needs no build step and stack traces point at the files a
// reader edits.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../extproc/main/main.ts');
// Development-only wiring (the simulator); an image without dev/ or simulator/ runs without it.
const extensions = await import('../dev/wiring.ts').then(
  (m) => m.extensions,
  (err) => {
    if (err?.code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  },
);

const controller = new AbortController();
const onSignal = (signal) => {
  // A second Ctrl-C means "now": skip the drain and whatever close is waiting on.
  if (controller.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
  controller.abort(signal);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

process.exitCode = await main(process.argv.slice(2), controller.signal, extensions);
process.off('SIGINT', onSignal);
process.off('SIGTERM', onSignal);
