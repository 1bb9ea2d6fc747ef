/**
 * Children of a benchmark run: each server (simulator, edge, extproc) runs in its own Node process,
 * pinned with `taskset` to the system-under-test core, while this process — the load generator —
 * pins itself to another core. Every child is killed when the run ends, fails or is interrupted.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

export type ServerName = 'simulator' | 'edge' | 'extproc' | 'stub' | 'node-proxy' | 'external';

export interface ChildOptions {
  /** Pin to this core (taskset -c). */
  readonly cpu?: number;
  /** Flags for node itself, e.g. `--cpu-prof`. */
  readonly nodeFlags?: readonly string[];
  readonly readyTimeoutMs?: number;
  /**
   * The child starts processes of its own (nginx's master and worker, a wrapped peer): run it in its
   * own process group so that cleanup reaches the whole tree, and count CPU and RSS over the tree.
   */
  readonly tree?: boolean;
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
/** Children that lead a process group of their own ({@link ChildOptions.tree}). */
const groups = new WeakSet<ChildProcess>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers must be synchronous: a plain SIGKILL to each child still alive (to the whole
  // process group of a child that started processes of its own).
  process.on('exit', () => {
    for (const c of live) {
      if (groups.has(c) && c.pid !== undefined) {
        try {
          process.kill(-c.pid, 'SIGKILL');
          continue;
        } catch {
          // group already gone: fall through to the child itself
        }
      }
      c.kill('SIGKILL');
    }
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
      // A wrapper that exited leaves nothing behind on purpose; make sure of it for its group.
      if (groups.has(c) && c.pid !== undefined) {
        try {
          process.kill(-c.pid, 'SIGKILL');
        } catch {
          // the group is empty: the usual case
        }
      }
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

/** The process and all its descendants, from the parent pid field of every /proc/PID/stat. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited while listing
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list) list.push(Number(name));
    else children.set(ppid, [Number(name)]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Sum of `read(pid)` over a process tree, skipping processes that exit meanwhile. */
function sumOverTree(root: number, read: (pid: number) => number): number {
  let t = 0;
  for (const pid of processTree(root)) {
    try {
      t += read(pid);
    } catch (err) {
      if (pid === root) throw err;
    }
  }
  return t;
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
  const spawnOpts = { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] as ('pipe')[], detached: opts.tree === true };
  // A single Node process starts unpinned and is pinned once READY (below): startup (tsx, module
  // loading) is CPU-bound and nothing is measured while a topology starts, so children starting
  // together use both cores. A tree is pinned from the start: its later processes (nginx's worker)
  // may not exist yet when READY arrives, and they inherit the affinity.
  const pinLater = opts.cpu !== undefined && !opts.tree;
  const child =
    opts.cpu === undefined || pinLater
      ? spawn(process.execPath, node, spawnOpts)
      : spawn('taskset', ['-c', String(opts.cpu), process.execPath, ...node], spawnOpts);
  live.add(child);
  if (opts.tree) groups.add(child);
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
      child.once('exit', () => {
        live.delete(child);
        // A wrapper that died on its own must not leave its program (nginx, Portkey) behind.
        if (opts.tree) {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // the group is already empty
          }
        }
      });
      const pid = child.pid!;
      if (pinLater) {
        try {
          // Every thread (libuv pool, V8 platform): what runs from now on is measured on the SUT core.
          execFileSync('taskset', ['-a', '-cp', String(opts.cpu), String(pid)], { stdio: 'ignore' });
        } catch (err) {
          fail(`could not pin to CPU ${opts.cpu}: ${(err as Error).message}`);
          return;
        }
      }
      resolve({
        name: label,
        pid,
        port: Number(m[1]),
        rssKiB: () => (opts.tree ? sumOverTree(pid, readRssKiB) : readRssKiB(pid)),
        cpuSeconds: () => (opts.tree ? sumOverTree(pid, readCpuSeconds) : readCpuSeconds(pid)),
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
      t += groups.has(c) ? sumOverTree(c.pid, readCpuSeconds) : readCpuSeconds(c.pid);
    } catch {
      // exited between the check and the read: already counted in cutime/cstime or about to be
    }
  }
  return t;
}
