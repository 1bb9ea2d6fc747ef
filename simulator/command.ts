/**
 * The simulator's command line: `voicegate-simulator` (bin/voicegate-simulator.js), and
 * `voicegate simulator` through the development wiring (dev/wiring.ts).
 *
 * Keys come from `--key` (4 units unless given), from every `smallest` account of `--config`,
 * or, with neither, from the development keys in `examples/dev/*.key` (4 units each).
 * Runs until SIGINT/SIGTERM (or `signal` aborts), then closes and resolves 0. Keys are never printed.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { SimulatorAccount } from './accounts.ts';
import { accountsFromConfig } from './config-accounts.ts';
import { DEFAULT_SIMULATOR_PORT, startSimulator, type SimulatorHandle, type SimulatorOptions } from './server.ts';

export const DEFAULT_UNITS = 4;
export const SIMULATOR_SUMMARY = 'a local simulator of api.smallest.ai';
export const SIMULATOR_SYNOPSIS = '[--port 7070] [--host 127.0.0.1] [--profile instant|realistic] [--key KEY[:UNITS]]… [--config FILE] [--ws-per-unit N] [--allow-query-token]';
const DEV_KEYS_DIR = fileURLToPath(new URL('../examples/dev/', import.meta.url));

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface ParsedArgs {
  readonly options: Omit<SimulatorOptions, 'accounts'>;
  readonly keys: SimulatorAccount[];
  readonly config: string | undefined;
}

const portSchema = z.coerce.number().int().min(0).max(65535);
const unitsSchema = z.coerce.number().int().min(1).max(100_000);

/** Parses the command line (pure; throws UsageError listing what is wrong). */
export function parseSimulatorArgs(args: readonly string[]): ParsedArgs {
  const options: Omit<SimulatorOptions, 'accounts'> & { port: number } = { port: DEFAULT_SIMULATOR_PORT };
  const keys: SimulatorAccount[] = [];
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const eq = flag.indexOf('=');
    const name = eq > 0 ? flag.slice(0, eq) : flag;
    const takesValue = !['--allow-query-token', '--help', '-h'].includes(name);
    const value = eq > 0 ? flag.slice(eq + 1) : takesValue ? args[++i] : undefined;
    if (takesValue && value === undefined) throw new UsageError(`${name} needs a value`);
    switch (name) {
      case '--port': {
        const p = portSchema.safeParse(value);
        if (!p.success) throw new UsageError(`--port: not a port: ${value}`);
        options.port = p.data;
        break;
      }
      case '--host':
        options.host = value!;
        break;
      case '--profile':
        if (value !== 'instant' && value !== 'realistic') throw new UsageError('--profile must be instant or realistic');
        options.profile = value;
        break;
      case '--key': {
        const colon = value!.lastIndexOf(':');
        const key = colon > 0 ? value!.slice(0, colon) : value!;
        const units = colon > 0 ? unitsSchema.safeParse(value!.slice(colon + 1)) : { success: true as const, data: DEFAULT_UNITS };
        if (!key || !units.success) throw new UsageError('--key expects KEY or KEY:UNITS');
        keys.push({ key, units: units.data });
        break;
      }
      case '--config':
        config = value;
        break;
      case '--ws-per-unit': {
        const n = unitsSchema.safeParse(value);
        if (!n.success) throw new UsageError('--ws-per-unit expects a positive integer');
        options.wsConnectionsPerUnit = n.data;
        break;
      }
      case '--allow-query-token':
        options.allowQueryToken = true;
        break;
      default:
        throw new UsageError(`unknown option ${name}`);
    }
  }
  return { options, keys, config };
}

/** The development keys shipped in examples/dev. */
async function devAccounts(dir = DEV_KEYS_DIR): Promise<SimulatorAccount[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.key')).sort();
  const out: SimulatorAccount[] = [];
  for (const f of files) {
    const key = (await readFile(join(dir, f), 'utf8')).trim();
    if (key) out.push({ key, units: DEFAULT_UNITS });
  }
  return out;
}

/** Resolves the accounts the command line asks for (config and --key add up). */
export async function resolveAccounts(parsed: ParsedArgs): Promise<SimulatorAccount[]> {
  const accounts = [...parsed.keys];
  if (parsed.config) accounts.push(...(await accountsFromConfig(parsed.config)));
  if (accounts.length === 0 && !parsed.config) accounts.push(...(await devAccounts()));
  return accounts;
}

export interface SimulatorCommandHooks {
  /** Stops the simulator (the CLI entry aborts it on SIGINT/SIGTERM). */
  readonly signal?: AbortSignal;
  /** Called once listening. */
  readonly onListening?: (handle: SimulatorHandle) => void;
  readonly log?: (line: string) => void;
}

/** Runs the simulator command; resolves with the process exit code. */
export async function simulatorCommand(args: string[], hooks: SimulatorCommandHooks = {}): Promise<number> {
  const log = hooks.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let parsed: ParsedArgs;
  let accounts: SimulatorAccount[];
  try {
    parsed = parseSimulatorArgs(args);
    accounts = await resolveAccounts(parsed);
  } catch (e) {
    log(`voicegate simulator: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  if (accounts.length === 0) {
    log('voicegate simulator: no keys (use --key KEY[:UNITS] or --config FILE with smallest accounts)');
    return 2;
  }
  let handle: SimulatorHandle;
  try {
    handle = await startSimulator({ ...parsed.options, accounts });
  } catch (e) {
    log(`voicegate simulator: cannot listen: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  log(`voicegate simulator listening on ${handle.url} (profile ${parsed.options.profile ?? 'realistic'}, ${accounts.length} key(s))`);
  hooks.onListening?.(handle);
  if (hooks.signal) await aborted(hooks.signal);
  else await new Promise<never>(() => {});
  await handle.close();
  return 0;
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
