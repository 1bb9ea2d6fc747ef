/**
 * Benchmark child: runs a program that is not ours (nginx, Portkey's gateway) under the same
 * contract as the other children. `--port N -- COMMAND ARGS…`: starts the command, prints
 * `READY N` once 127.0.0.1:N accepts connections, and stops it (SIGTERM, then SIGKILL) on SIGTERM
 * or when this process's stdin closes — so a peer never outlives a bench run, even one killed with
 * -9. The command's stdout is dropped (Portkey draws a spinner there); its stderr is passed on.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { arg, serve } from './lifecycle.ts';

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

await serve(async () => {
  const port = Number(arg('port'));
  const sep = process.argv.indexOf('--');
  const [command, ...args] = sep >= 0 ? process.argv.slice(sep + 1) : [];
  if (!Number.isInteger(port) || port <= 0 || !command) throw new Error('usage: external.ts --port N -- COMMAND ARGS…');
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  let exited: string | undefined;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited (${code ?? signal})`;
      resolve();
    });
    child.once('error', (err) => {
      exited = err.message;
      resolve();
    });
  });
  const deadline = Date.now() + 20_000;
  while (!(await accepts(port))) {
    if (exited) throw new Error(`${command}: ${exited} before listening on ${port}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${command}: not listening on ${port} after 20 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    close: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await gone;
      clearTimeout(force);
    },
  };
});
