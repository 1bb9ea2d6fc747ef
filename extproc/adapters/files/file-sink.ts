/**
 * SpanSink for running without NATS: appends each span as a JSON line to a local file and logs a
 * one-line summary per request, so `npm start` shows usage with no infrastructure.
 *
 * Durability, as the NATS spool: `publish()` hands the line to the kernel with one synchronous
 * write(2) before it returns, so a span survives the process being killed at any moment after, and
 * fdatasync(2) runs in batches (group commit: `syncIntervalMs` after the first unsynced line,
 * default 5 ms, or at once when `syncBatch` lines wait, default 256), so a power loss costs at most
 * those milliseconds while a high span rate pays one fdatasync per batch. `flush()` resolves once
 * every span published so far is fdatasync'ed.
 *
 * Rotation: a span that would take the file past `maxBytes` (default 64 MiB) first moves it to
 * `<path>.1` (and `.1` to `.2`, …, up to `keep` files, default 5; the oldest is removed), as
 * logrotate names them, so a long-running process without NATS cannot fill its disk.
 */
import { closeSync, fdatasync, fdatasyncSync, fstatSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { UsageSpan } from '../../core/usage/span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';

export const DEFAULT_SPAN_FILE_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SPAN_FILE_KEEP = 5;

const fdatasyncAsync = promisify(fdatasync);

export interface FileSpanSinkOptions {
  /** Size at which the file is rotated (default 64 MiB). */
  readonly maxBytes?: number;
  /** Rotated files kept beside it, `<path>.1` newest (default 5; 0 keeps none). */
  readonly keep?: number;
  /** Group commit: longest wait of a line for its fdatasync (default 5 ms) and the batch that starts one at once (default 256). */
  readonly syncIntervalMs?: number;
  readonly syncBatch?: number;
  /** Called after each fdatasync with the lines it made durable (metrics, benchmarks). */
  readonly onSync?: (lines: number) => void;
}

export class FileSpanSink implements SpanSink {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  readonly #log: Logger;
  readonly #syncIntervalMs: number;
  readonly #syncBatch: number;
  readonly #onSync: ((lines: number) => void) | undefined;
  #fd: number | undefined;
  // Bytes in the current file.
  #size = 0;
  // Group commit: lines written and not yet covered by an fdatasync, lines written ever, durable ever.
  #unsynced = 0;
  #written = 0;
  #durable = 0;
  #syncing: Promise<void> | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  // Someone waits in flush(): the next fdatasync starts as soon as the running one ends.
  #urgent = false;
  #waiters: Array<{ until: number; resolve: () => void }> = [];

  /** `path` is created (with its folder) if missing; spans are appended. */
  constructor(path: string, logger: Logger, opts: FileSpanSinkOptions = {}) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? DEFAULT_SPAN_FILE_MAX_BYTES;
    this.keep = opts.keep ?? DEFAULT_SPAN_FILE_KEEP;
    this.#syncIntervalMs = opts.syncIntervalMs ?? 5;
    this.#syncBatch = opts.syncBatch ?? 256;
    this.#onSync = opts.onSync;
    if (!(Number.isSafeInteger(this.maxBytes) && this.maxBytes > 0)) throw new RangeError(`span file maxBytes must be a positive integer, got ${this.maxBytes}`);
    if (!(Number.isSafeInteger(this.keep) && this.keep >= 0)) throw new RangeError(`span file keep must be a non-negative integer, got ${this.keep}`);
    this.#log = logger.child({ component: 'usage' });
    // A file that cannot be opened must not take the data path down: log once, keep serving, and
    // keep logging one summary line per request.
    try {
      mkdirSync(dirname(path), { recursive: true });
      this.#fd = openSync(path, 'a');
      this.#size = fstatSync(this.#fd).size;
    } catch (err) {
      this.#log.error({ err: errText(err), path }, 'usage file cannot be opened; spans are only logged');
    }
  }

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
    if (this.#fd === undefined) return;
    const line = Buffer.from(`${JSON.stringify(span)}\n`);
    try {
      // An empty file takes any line, however long: rotating would only make another empty file.
      if (this.#size > 0 && this.#size + line.length > this.maxBytes) this.#rotate();
      // 'a' mode: each write(2) lands at the end, whole, even with another writer on the file.
      let done = 0;
      while (done < line.length) done += writeSync(this.#fd, line, done, line.length - done);
      this.#size += line.length;
      this.#unsynced++;
      this.#written++;
      this.#scheduleSync();
    } catch (err) {
      this.#log.error({ err: errText(err) }, 'usage file write failed');
    }
  }

  #scheduleSync(): void {
    if (this.#unsynced === 0 || this.#syncing) return;
    if (this.#urgent || this.#unsynced >= this.#syncBatch) {
      this.#urgent = false;
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
      this.#startSync();
    } else {
      this.#syncTimer ??= setTimeout(() => {
        this.#syncTimer = undefined;
        this.#startSync();
      }, this.#syncIntervalMs);
    }
  }

  #startSync(): void {
    const fd = this.#fd;
    if (this.#syncing || fd === undefined || this.#unsynced === 0) return;
    const until = this.#written;
    const lines = this.#unsynced;
    this.#unsynced = 0;
    this.#syncing = fdatasyncAsync(fd).then(
      () => this.#synced(until, lines),
      (err: unknown) => {
        // The lines stay written; waiting for a durability the disk refuses would hang a drain.
        this.#log.error({ err: errText(err), path: this.path }, 'usage file fdatasync failed');
        this.#synced(until, 0);
      },
    );
  }

  #synced(until: number, lines: number, ended = true): void {
    if (ended) this.#syncing = undefined;
    this.#durable = Math.max(this.#durable, until);
    if (lines > 0) this.#onSync?.(lines);
    this.#waiters = this.#waiters.filter((w) => (w.until <= this.#durable ? (w.resolve(), false) : true));
    this.#scheduleSync();
  }

  /**
   * Renames while the old descriptor is still open (POSIX keeps it valid), makes the old file's
   * tail durable, then opens the new file and only then closes the old one, so a failure at any
   * step leaves a writable file behind. Synchronous: no span is written between the steps.
   */
  #rotate(): void {
    const current = this.#fd!;
    try {
      for (let i = this.keep - 1; i >= 1; i--) {
        try {
          renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
        } catch (err) {
          ignoreMissing(err);
        }
      }
      if (this.keep > 0) renameSync(this.path, `${this.path}.1`);
      else unlinkSync(this.path);
      const next = openSync(this.path, 'a');
      if (this.#unsynced > 0 || this.#syncing) fdatasyncSync(current);
      this.#fd = next;
      this.#size = 0;
      this.#unsynced = 0;
      this.#synced(this.#written, 0, false);
      // A running fdatasync still uses the old descriptor; close it after that one ends.
      const syncing = this.#syncing;
      if (syncing) void syncing.then(() => closeSync(current));
      else closeSync(current);
    } catch (err) {
      // Keep appending to the file we have; try again after another maxBytes, not on every span.
      this.#size = 0;
      this.#log.error({ err: errText(err), path: this.path }, 'usage file rotation failed; still appending to it');
    }
  }

  /** Resolves once every span published so far is fdatasync'ed (or the disk refused it, logged). */
  flush(): Promise<void> {
    const until = this.#written;
    if (until <= this.#durable) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.#waiters.push({ until, resolve }));
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    if (this.#syncing) this.#urgent = true;
    else this.#startSync();
    return p;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#syncing;
    clearTimeout(this.#syncTimer);
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
