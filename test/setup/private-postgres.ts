/**
 * A PostgreSQL server of the test's own, on a free port, for fault tests that stop and start it
 * (never the machine's shared server). `initdb` refuses root, so the cluster is made and run as the
 * `postgres` user in a folder that user owns; the socket directory is the cluster folder, so two
 * private servers never share a lock file.
 */
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

function binDir(): string {
  const versions = readdirSync('/usr/lib/postgresql').sort();
  const latest = versions.at(-1);
  if (!latest) throw new Error('no PostgreSQL installation under /usr/lib/postgresql');
  return `/usr/lib/postgresql/${latest}/bin`;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Runs a PostgreSQL binary as the `postgres` user when we are root, directly otherwise. */
async function asPostgres(binary: string, args: string[]): Promise<void> {
  const path = join(binDir(), binary);
  if (process.getuid?.() === 0) {
    await run('runuser', ['-u', 'postgres', '--', path, ...args], { timeout: 60_000 });
  } else {
    await run(path, args, { timeout: 60_000 });
  }
}

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
  readonly port: number;
  /** `pg_ctl stop -m fast`: connections are cut, as in a restart. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server (if running) and removes its folder. */
  destroy(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'vg-pg-'));
  const data = join(dir, 'data');
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const port = await freePort();
  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  let running = false;
  const handle: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      await asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '30', 'start']);
      running = true;
      // pg_ctl -w waits for the postmaster; a first query proves it accepts TCP connections.
      const client = new pg.Client({ connectionString: handle.url });
      client.on('error', () => undefined);
      await client.connect();
      await client.end();
    },
    async stop() {
      if (!running) return;
      await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
      running = false;
    },
    async destroy() {
      await handle.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}
