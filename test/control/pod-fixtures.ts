/**
 * What the control-plane tests share: the local part of a pod's config (identity and upstream,
 * no accounts — those come from the control plane), a free port, and a deadline-bounded poll.
 */
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { EXAMPLES_DIR } from '../e2e/stack.ts';

/** Writes a pod config at `path`: the dev issuer, the upstream, and `extra` lines under the provider. */
export async function writePodConfig(path: string, upstream: string, extra: readonly string[] = []): Promise<void> {
  await writeFile(
    path,
    [
      'version: 1',
      'identity:',
      '  issuers:',
      '    - issuer: https://voicegate.local/dev',
      '      audiences: [voicegate]',
      `      jwks: file:${join(EXAMPLES_DIR, 'dev/jwks.json')}`,
      '      algorithms: [ES256, RS256, EdDSA]',
      'providers:',
      '  smallest:',
      `    upstream: ${upstream}`,
      ...extra,
      '',
    ].join('\n'),
  );
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls `check` every 20 ms until it is true; throws naming `what` after `deadlineMs`. */
export async function until(check: () => Promise<boolean>, what: string, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
