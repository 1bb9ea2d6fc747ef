/**
 * A nats-server (JetStream on) of the test's own, on a free port with its own store folder, for
 * fault tests that kill and restart it — never the machine's shared server. The port stays the
 * same across restarts, so clients see an outage rather than a new server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { connect } from 'nats';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export class PrivateNats {
  #child: ChildProcess | undefined;

  private constructor(readonly port: number, readonly storeDir: string) {}

  /** Picks a free port; call {@link start} to run the server. */
  static async create(storeDir: string): Promise<PrivateNats> {
    return new PrivateNats(await freePort(), storeDir);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts the server and resolves once a client can connect (at most `timeoutMs`). */
  async start(timeoutMs = 10_000): Promise<void> {
    this.#child = spawn('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: 'ignore' });
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const nc = await connect({ servers: this.url, reconnect: false });
        await nc.close();
        return;
      } catch (err) {
        if (Date.now() > end) throw new Error(`private nats-server on ${this.port} not up`, { cause: err });
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to be gone. */
  async stop(): Promise<void> {
    const c = this.#child;
    this.#child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((r) => {
      c.once('exit', () => r());
      c.kill('SIGKILL');
    });
  }
}
