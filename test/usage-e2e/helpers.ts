/** Fixtures for the end-to-end usage tests: the example config aimed at a chosen upstream, keys, WAV/PCM. */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll } from 'vitest';
import { loadSnapshotFromText } from '../../extproc/adapters/files/config-file.ts';
import type { Snapshot } from '../../extproc/core/config/snapshot.ts';
import { freshDatabase, uniqueName } from '../usage/helpers.ts';

export const NATS_URL = 'nats://127.0.0.1:4222';
export const REPO = new URL('../../', import.meta.url).pathname;
export const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
const EXAMPLE_UPSTREAM = 'http://127.0.0.1:7070';

/** The provider keys of examples/voicegate.yaml's two accounts. */
export function exampleKeys(): { tts: string; stt: string } {
  const read = (name: string) => readFileSync(`${EXAMPLES}dev/${name}`, 'utf8').trim();
  return { tts: read('smallest-tts.key'), stt: read('smallest-stt.key') };
}

/**
 * examples/voicegate.yaml with its upstream pointed at `upstream` and its `file:dev/…` secrets made
 * absolute, so the text can live (or be loaded) anywhere.
 */
export function exampleConfigText(upstream: string): string {
  const text = readFileSync(`${EXAMPLES}voicegate.yaml`, 'utf8');
  if (!text.includes(EXAMPLE_UPSTREAM)) throw new Error('examples/voicegate.yaml no longer names the simulator upstream');
  return text.replaceAll(EXAMPLE_UPSTREAM, upstream).replaceAll('file:dev/', `file:${EXAMPLES}dev/`);
}

/** The example config's snapshot with `upstream` as Smallest's address. */
export function exampleSnapshot(upstream: string): Promise<Snapshot> {
  return loadSnapshotFromText(exampleConfigText(upstream), { origin: 'test:examples/voicegate.yaml', baseDir: EXAMPLES });
}

/** `n` characters of readable text (ASCII, so code points = characters = bytes). */
export function textOf(n: number, seed = 'voicegate meters every character '): string {
  return seed.repeat(Math.ceil(n / seed.length)).slice(0, n);
}

/**
 * Registers the per-file fixture of the process-level tests: a fresh database, a NATS connection,
 * a unique stream name and a temp folder, all removed after the file; child processes still
 * running at the end are killed.
 */
export function useIsolatedRun(tmpPrefix: string, streamPrefix: string) {
  const fixture = {
    tmp: mkdtempSync(join(tmpdir(), tmpPrefix)),
    stream: uniqueName(streamPrefix),
    children: [] as ChildProcess[],
    db: undefined as unknown as Awaited<ReturnType<typeof freshDatabase>>,
    nc: undefined as unknown as NatsConnection,
  };
  beforeAll(async () => {
    fixture.db = await freshDatabase();
    fixture.nc = await connect({ servers: NATS_URL });
  });
  afterAll(async () => {
    for (const c of fixture.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await (await fixture.nc.jetstreamManager()).streams.delete(fixture.stream).catch(() => undefined);
    await fixture.nc.close();
    await fixture.db.drop();
    rmSync(fixture.tmp, { recursive: true, force: true });
  });
  return fixture;
}
