/**
 * SpanSink for running without NATS: appends each span as a JSON line to a local file and logs a
 * one-line summary per request, so `npm start` shows usage with no infrastructure.
 *
 * Rotation: a span that would take the file past `maxBytes` (default 64 MiB) first moves it to
 * `<path>.1` (and `.1` to `.2`, …, up to `keep` files, default 5; the oldest is removed), as
 * logrotate names them, so a long-running process without NATS cannot fill its disk.
 */
import { mkdirSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { UsageSpan } from '../../core/usage/span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';

export const DEFAULT_SPAN_FILE_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SPAN_FILE_KEEP = 5;

export interface FileSpanSinkOptions {
  /** Size at which the file is rotated (default 64 MiB). */
  readonly maxBytes?: number;
  /** Rotated files kept beside it, `<path>.1` newest (default 5; 0 keeps none). */
  readonly keep?: number;
}

export class FileSpanSink implements SpanSink {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  readonly #log: Logger;
  #fh: Promise<FileHandle>;
  #chain: Promise<void> = Promise.resolve();
  // Bytes in the current file; read from it on the first write.
  #size: number | undefined;

  /** `path` is created (with its folder) if missing; spans are appended. */
  constructor(path: string, logger: Logger, opts: FileSpanSinkOptions = {}) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? DEFAULT_SPAN_FILE_MAX_BYTES;
    this.keep = opts.keep ?? DEFAULT_SPAN_FILE_KEEP;
    if (!(Number.isSafeInteger(this.maxBytes) && this.maxBytes > 0)) throw new RangeError(`span file maxBytes must be a positive integer, got ${this.maxBytes}`);
    if (!(Number.isSafeInteger(this.keep) && this.keep >= 0)) throw new RangeError(`span file keep must be a non-negative integer, got ${this.keep}`);
    this.#log = logger.child({ component: 'usage' });
    // A file that cannot be opened must not take the data path down: log once, keep serving, and
    // keep logging one summary line per request.
    let opened: Promise<FileHandle>;
    try {
      mkdirSync(dirname(path), { recursive: true });
      opened = open(path, 'a');
    } catch (err) {
      opened = Promise.reject(err);
    }
    this.#fh = opened;
    opened.catch((err: unknown) => {
      this.#unavailable = true;
      this.#log.error({ err: err instanceof Error ? err.message : String(err), path }, 'usage file cannot be opened; spans are only logged');
    });
  }

  #unavailable = false;

  publish(span: UsageSpan): void {
    this.#log.info(
      {
        user: span.user,
        model: span.model,
        route: span.routeKind,
        status: span.status,
        ms: span.durationMs,
        ...(span.characters !== undefined ? { characters: span.characters } : {}),
        ...(span.audioSeconds !== undefined ? { audioSeconds: span.audioSeconds } : {}),
        costUsd: span.costUsd,
        requestId: span.requestId,
      },
      'usage',
    );
    if (this.#unavailable) return;
    const line = Buffer.from(`${JSON.stringify(span)}\n`);
    this.#chain = this.#chain
      .then(async () => {
        const fh = await this.#fh;
        this.#size ??= (await fh.stat()).size;
        // An empty file takes any line, however long: rotating would only make another empty file.
        if (this.#size > 0 && this.#size + line.length > this.maxBytes) await this.#rotate(fh);
        await (await this.#fh).appendFile(line);
        this.#size += line.length;
      })
      .catch((err: unknown) => {
        // The open failure was logged once already.
        if (!this.#unavailable) this.#log.error({ err: err instanceof Error ? err.message : String(err) }, 'usage file write failed');
      });
  }

  /**
   * Renames while the old handle is still open (POSIX keeps it valid), then opens the new file and
   * only then closes the old one, so a failure at any step leaves a writable file behind.
   */
  async #rotate(current: FileHandle): Promise<void> {
    try {
      for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch(ignoreMissing);
      if (this.keep > 0) await rename(this.path, `${this.path}.1`);
      else await unlink(this.path);
      const next = await open(this.path, 'a');
      this.#fh = Promise.resolve(next);
      this.#size = 0;
      await current.close().catch(() => undefined);
    } catch (err) {
      // Keep appending to the file we have; try again after another maxBytes, not on every span.
      this.#size = 0;
      this.#log.error({ err: err instanceof Error ? err.message : String(err), path: this.path }, 'usage file rotation failed; still appending to it');
    }
  }

  async flush(): Promise<void> {
    await this.#chain;
  }

  async close(): Promise<void> {
    await this.flush();
    const fh = await this.#fh.catch(() => undefined);
    await fh?.close();
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
