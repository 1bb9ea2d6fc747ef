/**
 * The provider keys of a voicegate config file, read here rather than through the gateway's
 * loader so the simulator stays a separate program: only `accounts[].provider`, `.token` (an
 * `env:VAR` or `file:PATH` reference, PATH relative to the file) and `.concurrency` matter.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse } from 'yaml';
import type { SimulatorAccount } from './accounts.ts';

/** The gateway's defaults for an account that leaves these out. */
const DEFAULT_PROVIDER = 'smallest';
const DEFAULT_CONCURRENCY = 1;

interface AccountDoc {
  provider?: unknown;
  token?: unknown;
  concurrency?: unknown;
}

/** Every `smallest` account of the file; throws naming the first account it cannot read. */
export async function accountsFromConfig(path: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<SimulatorAccount[]> {
  const doc = parse(await readFile(path, 'utf8')) as { accounts?: unknown } | null;
  const list = Array.isArray(doc?.accounts) ? (doc.accounts as AccountDoc[]) : [];
  const out: SimulatorAccount[] = [];
  for (const [i, a] of list.entries()) {
    if ((a?.provider ?? DEFAULT_PROVIDER) !== DEFAULT_PROVIDER) continue;
    const units = a.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(units) || (units as number) < 1) throw new Error(`${path}: accounts[${i}].concurrency must be a positive integer`);
    out.push({ key: await secret(a.token, dirname(resolve(path)), env, `${path}: accounts[${i}].token`), units: units as number });
  }
  return out;
}

async function secret(ref: unknown, baseDir: string, env: Readonly<Record<string, string | undefined>>, where: string): Promise<string> {
  if (typeof ref === 'string' && ref.startsWith('env:')) {
    const value = env[ref.slice(4)]?.trim();
    if (!value) throw new Error(`${where}: env var ${ref.slice(4)} is not set`);
    return value;
  }
  if (typeof ref === 'string' && ref.startsWith('file:')) {
    const file = isAbsolute(ref.slice(5)) ? ref.slice(5) : resolve(baseDir, ref.slice(5));
    const value = (await readFile(file, 'utf8').catch(() => '')).trim();
    if (!value) throw new Error(`${where}: cannot read ${file}`);
    return value;
  }
  throw new Error(`${where}: must be env:VAR or file:PATH`);
}
