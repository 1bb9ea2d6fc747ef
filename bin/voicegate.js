#!/usr/bin/env node
// The published entry point. Sources are TypeScript run through tsx's loader, so the repo needs no
// build step and stack traces point at the files a reader edits.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../extproc/main/main.ts');
const code = await runCli(process.argv.slice(2));
if (typeof code === 'number') process.exitCode = code;
