/**
 * What `voicegate admin` and `voicegate apply` share: the credential (from a file or the
 * environment, never a flag), the client, the one-line error report, files-or-stdin, tables.
 *
 * Exit codes: 2 for a usage or local-file problem (nothing was sent), 1 when the control plane
 * refused or could not be reached.
 */
import { readFile } from 'node:fs/promises';
import { AdminApiError, AdminClient, ControlUnreachableError, displayUrl, UnexpectedAnswerError } from '../../adapters/admin-api/client.ts';
import { isLoopbackHost } from '../../adapters/admin-api/server.ts';
import type { RunContext } from '../command.ts';
import { ADMIN_TOKEN_ENV } from '../admin-options.ts';

/** A local problem: reported on one line, exit 2, nothing sent. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A read-modify-write whose If-Match was stale: someone else changed the resource in between. */
export class StaleWriteError extends Error {
  override readonly name = 'StaleWriteError';
  constructor(what: string) {
    super(`${what} was changed by someone else after this command read it; nothing was changed — look at it again and retry`);
  }
}

const PRINTABLE_LINE = /^[\x21-\x7e]+$/;

/** The file's text, or stdin's for `-`, with one trailing line break dropped. */
export async function readTextArg(ctx: RunContext, path: string, what: string): Promise<string> {
  let text: string;
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of ctx.ext.stdin ?? process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  return text.replace(/\r?\n$/, '');
}

/** A secret read by {@link readTextArg} that must be one printable token; its text is never quoted. */
export async function readSecretArg(ctx: RunContext, path: string, what: string): Promise<string> {
  const text = await readTextArg(ctx, path, what);
  if (!PRINTABLE_LINE.test(text)) throw new UsageError(`${what} ${path === '-' ? 'on stdin' : path} must be one line of printable characters without spaces`);
  return text;
}

export interface Connection {
  readonly controlUrl: string;
  readonly tokenFile: string | undefined;
}

/** The client of `o`, its bearer read from --token-file or VOICEGATE_ADMIN_TOKEN. */
export async function connect(ctx: RunContext, o: Connection): Promise<AdminClient> {
  let bearer: string;
  if (o.tokenFile !== undefined) {
    if (o.tokenFile === '-') throw new UsageError('--token-file needs a file (stdin is for the provider token and apply documents)');
    bearer = await readSecretArg(ctx, o.tokenFile, 'the admin credential');
  } else {
    const fromEnv = ctx.env[ADMIN_TOKEN_ENV];
    if (fromEnv === undefined || fromEnv === '') throw new UsageError(`no admin credential: give --token-file FILE, or set VOICEGATE_ADMIN_TOKEN_FILE or ${ADMIN_TOKEN_ENV}`);
    if (!PRINTABLE_LINE.test(fromEnv)) throw new UsageError(`${ADMIN_TOKEN_ENV} must be one line of printable characters without spaces`);
    bearer = fromEnv;
  }
  const url = new URL(o.controlUrl);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname.replace(/^\[(.*)\]$/, '$1'))) {
    ctx.stderr(`voicegate ${ctx.name}: warning: ${displayUrl(o.controlUrl)} is plain HTTP off this machine; the credential crosses the network in clear\n`);
  }
  return new AdminClient({ baseUrl: o.controlUrl, bearer, signal: ctx.signal });
}

/** The one line of a failure and its exit code; undefined for what is not an expected failure. */
export function failure(ctx: RunContext, err: unknown): number | undefined {
  if (err instanceof UsageError) {
    ctx.stderr(`voicegate ${ctx.name}: ${err.message}\n`);
    return 2;
  }
  if (err instanceof AdminApiError || err instanceof ControlUnreachableError || err instanceof UnexpectedAnswerError || err instanceof StaleWriteError) {
    // AdminApiError's message is `<title>: <detail> (field <field>)`.
    ctx.stderr(`voicegate ${ctx.name}: ${oneLine(err.message)}\n`);
    return 1;
  }
  return undefined;
}

/** Runs `body`, turning expected failures into their line and exit code. */
export async function guarded(ctx: RunContext, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    const code = failure(ctx, err);
    if (code === undefined) throw err;
    return code;
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\r?\n\s*/g, ' ');
}

/** Columns aligned with two spaces; the last one is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** `field  value` lines of one resource. */
export function details(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join('\n') + '\n';
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
