/**
 * Children of a benchmark run: each server (simulator, edge, extproc) runs in its own Node process,
 * pinned with `taskset` to the system-under-test core, while this process — the load generator —
 * pins itself to another core. Every child is killed when the run ends, fails or is interrupted.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from './config.ts';

export interface CpuPlan {
  /** Whether taskset pinning is in force. */
  readonly pinned: boolean;
  /** Core of the servers under test (when pinned). */
  readonly sutCpu: number;
  /** Core of the load generator, i.e. this process (when pinned). */
  readonly loadCpu: number;
  readonly cores: number;
  /** Shown under the table. */
  readonly note: string;
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Decides the pinning: servers on core 0, load on core 1, when there are two cores and taskset. */
export function planCpus(): CpuPlan {
  const cores = availableParallelism();
  if (cores < 2) {
    return { pinned: false, sutCpu: 0, loadCpu: 0, cores, note: `only ${cores} core: load generator and servers share it; figures are pessimistic` };
  }
  if (!hasTaskset()) {
    return { pinned: false, sutCpu: 0, loadCpu: 0, cores, note: 'taskset not found: processes are not pinned; figures are noisier' };
  }
  return {
    pinned: true,
    sutCpu: 0,
    loadCpu: 1,
    cores,
    note: `${cores} cores: servers under test pinned to CPU 0, load generator (this process, every thread) to CPU 1`,
  };
}

/** Pins every thread of this process (libuv pool included) to `cpu`. */
export function pinSelf(cpu: number): void {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

export type ServerName = 'simulator' | 'edge' | 'extproc';

export interface ChildOptions {
  /** Pin to this core (taskset -c). */
  readonly cpu?: number;
  /** Flags for node itself, e.g. `--cpu-prof`. */
  readonly nodeFlags?: readonly string[];
  readonly readyTimeoutMs?: number;
}

export interface ServerChild {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** Resident set size now, KiB (VmRSS of /proc/PID/status). */
  rssKiB(): number;
  /** User + system CPU seconds the process has used so far (/proc/PID/stat). */
  cpuSeconds(): number;
  /** Asks the child for a full GC (SIGUSR2; only children started with --expose-gc act on it). */
  collectGarbage(): void;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers must be synchronous: a plain SIGKILL to each child still alive.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping servers\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

/** Stops every child still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => stopProcess(c)));
}

function stopProcess(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) {
    live.delete(c);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const kill = setTimeout(() => c.kill('SIGKILL'), 5_000);
    c.once('exit', () => {
      clearTimeout(kill);
      live.delete(c);
      resolve();
    });
    c.kill('SIGTERM');
  });
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** VmRSS of a process in KiB. */
export function readRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** utime + stime of a process (all threads), seconds. */
export function readCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces; fields are counted from after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Starts `bench/servers/<name>.ts` in a child and resolves once it prints `READY <port>`.
 * Rejects (and kills the child) if it exits or stays silent past the timeout.
 */
export function startServer(name: ServerName, args: readonly string[], opts: ChildOptions = {}): Promise<ServerChild> {
  installHandlers();
  const node = [...(opts.nodeFlags ?? []), join(REPO_ROOT, 'bin', 'run-ts.js'), join(REPO_ROOT, 'bench', 'servers', `${name}.ts`), ...args];
  const child =
    opts.cpu === undefined
      ? spawn(process.execPath, node, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('taskset', ['-c', String(opts.cpu), process.execPath, ...node], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const label = `${name} ${args.join(' ')}`.trim();
    const fail = (why: string) => {
      clearTimeout(timer);
      void stopProcess(child);
      reject(new Error(`${label}: ${why}${stderr ? `\n${stderr}` : ''}`));
    };
    const timer = setTimeout(() => fail('no READY line in time'), opts.readyTimeoutMs ?? 30_000);
    child.once('exit', (code, signal) => fail(`exited early (${code ?? signal})`));
    child.once('error', (err) => fail(err.message));
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = /^READY (\d+)$/.exec(line.trim());
      if (!m) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.once('exit', () => live.delete(child));
      const pid = child.pid!;
      resolve({
        name: label,
        pid,
        port: Number(m[1]),
        rssKiB: () => readRssKiB(pid),
        cpuSeconds: () => readCpuSeconds(pid),
        collectGarbage: () => void child.kill('SIGUSR2'),
        stop: () => stopProcess(child),
      });
    });
  });
}

/** Busy CPU seconds of the whole machine so far (every core: user, nice, system, irq, softirq, steal). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
}

/**
 * CPU seconds used by this run: this process, its reaped children (cutime/cstime) and the children
 * still running. Compared with {@link machineBusySeconds}, it shows how much other work shared the
 * machine during a case.
 */
export function ownCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let t = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / CLOCK_TICKS;
  for (const c of live) {
    if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) continue;
    try {
      t += readCpuSeconds(c.pid);
    } catch {
      // exited between the check and the read: already counted in cutime/cstime or about to be
    }
  }
  return t;
}
