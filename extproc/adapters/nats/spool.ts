/**
 * The span write-ahead log: every span the NATS sink accepts is a JSON line in `<dir>/spool.jsonl`
 * before (or while) it is published, and `spool.offset` says how far the spans are known to be
 * acknowledged. The name is not `spans.jsonl` on purpose: that is the file sink's output in the same
 * folder (`--spool-dir`), and a file-mode run followed by a NATS run must never replay the
 * file-mode spans as if NATS had refused them.
 *
 * Durability, in two steps:
 * - `write()` hands the line to the kernel with a synchronous write(2) before it returns. From then
 *   on the span survives the process being killed (kill -9, OOM, a crash): the page cache belongs
 *   to the kernel, not to the process.
 * - fdatasync(2) is batched (group commit): one call covers every line written since the last one,
 *   started `syncIntervalMs` (default 5 ms) after the first unsynced line or at once when
 *   `syncBatch` (default 256) lines wait. So a power loss costs at most those milliseconds, and a
 *   high span rate pays one fdatasync per batch, not per span. `synced()` resolves once all lines
 *   written so far are fdatasync'ed.
 *
 * Replay bookkeeping: positions handed out are logical byte offsets that only grow for the life of
 * the process (the file is emptied or compacted underneath, see below). `commit()` records how far
 * everything is acknowledged; the offset file is rewritten lazily (at most every 20 ms, not
 * fsynced), so a crash may replay a few acknowledged spans again — a duplicate publish that
 * JetStream drops by `Nats-Msg-Id` within its duplicate window and the aggregator by its span-id
 * primary key beyond it. Never the other way round: the offset file never runs ahead of the acks.
 *
 * Size: the file may not grow past `maxBytes` (default 256 MiB). When a write does not fit, the
 * newest lines are refused and `write()` reports how many, so the caller can count and log them:
 * the spans already on disk are older and keep their place in the replay order. The cap counts
 * the file as it is on disk, acknowledged bytes included, because that is what fills the volume.
 * Acknowledged bytes are given back by `compact()`: the file is emptied when all of it is
 * acknowledged, or its short unacknowledged tail is copied to a new file that replaces it by
 * rename(2). The offset file names the file's inode, so an offset left from before a rename is
 * never applied to the new file.
 *
 * Start: nothing is read whole. What is left to replay is counted in the background over a
 * stream (for the gauge only) and replay reads bounded chunks, so a large spool neither delays the
 * listeners nor blocks the event loop. A last line torn by a power loss is terminated, so it is
 * skipped as unreadable instead of swallowing the next span written after it.
 */
import {
  closeSync,
  createReadStream,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  read,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/** What the NATS sink may keep on disk while NATS is away, unless configured otherwise. */
export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SPOOL_NAME = 'spool';
/** Group commit: the longest a written line waits for its fdatasync, and the batch that starts one at once. */
export const DEFAULT_SYNC_INTERVAL_MS = 5;
export const DEFAULT_SYNC_BATCH = 256;
/** Acknowledged bytes at the head of the file before `compact()` gives them back. */
export const DEFAULT_COMPACT_BYTES = 1024 * 1024;
/** One replay read; far above any span line (a span's longest field is a path of a few KiB). */
const READ_CHUNK_BYTES = 256 * 1024;
/** The largest unacknowledged tail `compact()` copies (synchronously) into a fresh file. */
const COMPACT_MAX_TAIL_BYTES = 256 * 1024;
const OFFSET_WRITE_DELAY_MS = 20;

const readAsync = promisify(read);
const fdatasyncAsync = promisify(fdatasync);

export interface SpoolOptions {
  /** File stem: `<name>.jsonl` and `<name>.offset` (default `spool`). */
  readonly name?: string;
  /** Largest size of the spool file; newer spans that do not fit are refused (default 256 MiB). */
  readonly maxBytes?: number;
  /** Longest wait of a written line for its fdatasync (default 5 ms). */
  readonly syncIntervalMs?: number;
  /** Unsynced lines that start an fdatasync at once (default 256). */
  readonly syncBatch?: number;
  /** Acknowledged bytes that make `compact()` act (default 1 MiB). */
  readonly compactBytes?: number;
  /** Called after each fdatasync with the lines it made durable (metrics). */
  readonly onSync?: (lines: number) => void;
}

export interface SpoolBatch {
  readonly lines: string[];
  /** Offset to commit once the batch is published. */
  readonly nextOffset: number;
}

export interface WriteResult {
  /** The logical end offset of each line written, in order; commit one to mark it and all before it done. */
  readonly ends: readonly number[];
  /** Lines of this write that were not written because the spool is full. */
  readonly refused: number;
}

export class Spool {
  readonly path: string;
  readonly maxBytes: number;
  /** Settles once the spans left over from an earlier run have been counted. */
  readonly counted: Promise<void>;
  readonly #offsetPath: string;
  readonly #syncIntervalMs: number;
  readonly #syncBatch: number;
  readonly #compactBytes: number;
  readonly #onSync: ((lines: number) => void) | undefined;
  #fd: number | undefined;
  #ino: number;
  // Physical size and replay offset in the current file; logical = physical + #base.
  #size: number;
  #offset: number;
  #base = 0;
  // Lines found at open (undefined until counted) plus lines written minus lines committed since.
  #backlog: number | undefined = 0;
  #delta = 0;
  // Bumped when the file is emptied or replaced, so a count that started before it is discarded.
  #generation = 0;
  // Group commit: logical end that is fdatasync'ed, lines not yet covered, the call in progress.
  #durable: number;
  #unsyncedLines = 0;
  #syncing: Promise<void> | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  // Someone waits in flush(): the next fdatasync starts as soon as the running one ends.
  #urgent = false;
  #syncWaiters: Array<{ until: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  #offsetTimer: NodeJS.Timeout | undefined;
  #offsetDirty = false;
  // A descriptor replaced by compaction while an fdatasync on it was running; closed after it.
  #retired: number[] = [];

  private constructor(dir: string, name: string, opts: SpoolOptions, fd: number, ino: number, size: number, offset: number) {
    this.path = join(dir, `${name}.jsonl`);
    this.#offsetPath = join(dir, `${name}.offset`);
    this.maxBytes = opts.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    this.#syncIntervalMs = opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    this.#syncBatch = opts.syncBatch ?? DEFAULT_SYNC_BATCH;
    this.#compactBytes = opts.compactBytes ?? DEFAULT_COMPACT_BYTES;
    this.#onSync = opts.onSync;
    this.#fd = fd;
    this.#ino = ino;
    this.#size = size;
    this.#offset = offset;
    this.#durable = size;
    this.counted = size > offset ? this.#countBacklog() : Promise.resolve();
  }

  /** Opens (creating if needed) the spool; resolves without reading what is left to replay. */
  static async open(dir: string, opts: SpoolOptions = {}): Promise<Spool> {
    const name = opts.name ?? DEFAULT_SPOOL_NAME;
    const maxBytes = opts.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0)) throw new RangeError(`spool maxBytes must be a positive integer, got ${maxBytes}`);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${name}.jsonl`);
    const fd = openSync(path, 'a+');
    closeSync(fd);
    const rw = openSync(path, 'r+');
    const st = fstatSync(rw);
    let size = st.size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(rw, last, 0, 1, size - 1);
      if (last[0] !== 10) {
        writeSync(rw, '\n', size);
        size += 1;
      }
    }
    const offset = readOffset(join(dir, `${name}.offset`), st.ino, size);
    return new Spool(dir, name, opts, rw, st.ino, size, offset);
  }

  async #countBacklog(): Promise<void> {
    const generation = this.#generation;
    this.#backlog = undefined;
    let lines = 0;
    try {
      const stream = createReadStream(this.path, { start: this.#offset, end: this.#size - 1, highWaterMark: READ_CHUNK_BYTES });
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      }
    } catch {
      // The gauge stays an undercount; replay does not depend on it.
    }
    if (generation === this.#generation) this.#backlog = lines;
  }

  /** Bytes not yet acknowledged. */
  get bytes(): number {
    return this.#size - this.#offset;
  }

  /** Bytes in the spool file, acknowledged ones included (what the cap limits). */
  get fileBytes(): number {
    return this.#size;
  }

  /** Logical offset everything before which is acknowledged. */
  get offset(): number {
    return this.#offset + this.#base;
  }

  /** Logical end of what has been written. */
  get end(): number {
    return this.#size + this.#base;
  }

  /** Spans not yet acknowledged; an undercount until {@link counted}. */
  get spans(): number {
    return Math.max(0, (this.#backlog ?? 0) + this.#delta);
  }

  /** True when everything written is acknowledged. */
  get empty(): boolean {
    return this.#size === this.#offset;
  }

  /**
   * Writes lines (no newlines inside) with one write(2) before returning: they survive a kill of
   * this process from now on, and a power loss once the next group fdatasync is done. Lines that
   * would take the file past `maxBytes` are refused, newest first, so what is written is a prefix.
   * Throws when the write itself fails (nothing of it is then counted as written).
   */
  write(lines: readonly string[]): WriteResult {
    if (this.#fd === undefined) throw new Error('spool is closed');
    const parts: Buffer[] = [];
    const ends: number[] = [];
    let bytes = 0;
    for (const line of lines) {
      const b = Buffer.from(`${line}\n`);
      if (this.#size + bytes + b.length > this.maxBytes) break;
      parts.push(b);
      bytes += b.length;
      ends.push(this.#base + this.#size + bytes);
    }
    if (parts.length === 0) return { ends, refused: lines.length };
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
    // Positional writes: a failed, partial write leaves a fragment past #size that the next write
    // overwrites in place, so the file never holds half a line in the middle.
    let done = 0;
    while (done < buf.length) done += writeSync(this.#fd, buf, done, buf.length - done, this.#size + done);
    this.#size += buf.length;
    this.#delta += parts.length;
    this.#unsyncedLines += parts.length;
    this.#scheduleSync();
    return { ends, refused: lines.length - parts.length };
  }

  #scheduleSync(): void {
    if (this.#unsyncedLines === 0 || this.#syncing) return;
    if (this.#urgent || this.#unsyncedLines >= this.#syncBatch) {
      this.#urgent = false;
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
      this.#startSync();
    } else if (!this.#syncTimer) {
      this.#syncTimer = setTimeout(() => {
        this.#syncTimer = undefined;
        this.#startSync();
      }, this.#syncIntervalMs);
    }
  }

  #startSync(): void {
    const fd = this.#fd;
    if (this.#syncing || fd === undefined || this.#unsyncedLines === 0) return;
    const until = this.end;
    const lines = this.#unsyncedLines;
    this.#unsyncedLines = 0;
    this.#syncing = fdatasyncAsync(fd).then(
      () => {
        this.#syncing = undefined;
        this.#closeRetired();
        this.#onSync?.(lines);
        this.#markDurable(until);
        this.#scheduleSync();
      },
      (err: unknown) => {
        this.#syncing = undefined;
        this.#closeRetired();
        // Data that cannot be made durable is reported to whoever waits for it; it stays written.
        const waiters = this.#syncWaiters.filter((w) => w.until <= until);
        this.#syncWaiters = this.#syncWaiters.filter((w) => w.until > until);
        for (const w of waiters) w.reject(err);
        this.#scheduleSync();
      },
    );
  }

  #markDurable(until: number): void {
    this.#durable = Math.max(this.#durable, until);
    this.#syncWaiters = this.#syncWaiters.filter((w) => (w.until <= this.#durable ? (w.resolve(), false) : true));
  }

  /** Resolves once every line written so far is fdatasync'ed; starts that fdatasync now. */
  synced(): Promise<void> {
    const until = this.end;
    if (until <= this.#durable) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.#syncWaiters.push({ until, resolve, reject }));
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    // A running fdatasync may not cover these lines; #scheduleSync runs again when it ends.
    if (this.#syncing) this.#urgent = true;
    else this.#startSync();
    return p;
  }

  /** Same as {@link synced}: every write is already handed to the kernel when it returns. */
  settled(): Promise<void> {
    return this.synced();
  }

  /** Reads up to `max` complete lines from the acknowledged offset. */
  async read(max: number, maxBytes = READ_CHUNK_BYTES): Promise<SpoolBatch> {
    const fd = this.#fd;
    const start0 = this.#offset;
    const base = this.#base;
    const len = Math.min(this.#size - start0, maxBytes);
    if (len <= 0 || fd === undefined) return { lines: [], nextOffset: start0 + base };
    const buf = Buffer.alloc(len);
    await readAsync(fd, buf, 0, len, start0);
    const lines: string[] = [];
    let start = 0;
    for (let i = buf.indexOf(10); i !== -1 && lines.length < max; i = buf.indexOf(10, start)) {
      lines.push(buf.toString('utf8', start, i));
      start = i + 1;
    }
    if (lines.length === 0 && len === maxBytes) {
      // A single line longer than maxBytes cannot be a span; skip it rather than stall forever.
      return { lines: [], nextOffset: base + start0 + len };
    }
    return { lines, nextOffset: base + start0 + start };
  }

  /** Marks everything before the logical `offset` as acknowledged (`spans` lines). */
  commit(offset: number, spans: number): void {
    const physical = offset - this.#base;
    if (physical <= this.#offset) return;
    this.#offset = Math.min(physical, this.#size);
    this.#delta -= spans;
    this.#offsetDirty = true;
    this.#offsetTimer ??= setTimeout(() => {
      this.#offsetTimer = undefined;
      this.#writeOffset(false);
    }, OFFSET_WRITE_DELAY_MS);
    this.#offsetTimer.unref();
  }

  #writeOffset(durable: boolean): void {
    if (!this.#offsetDirty && !durable) return;
    this.#offsetDirty = false;
    try {
      writeFileSync(this.#offsetPath, `${this.#offset} ${this.#ino}`);
      if (durable) {
        const fd = openSync(this.#offsetPath, 'r+');
        try {
          fdatasyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }
    } catch {
      // A stale offset only replays acknowledged spans again, which de-duplication absorbs.
    }
  }

  /**
   * Empties the spool once everything in it is acknowledged. Synchronous on purpose: no write can
   * slip in between the truncation and the offset reset.
   */
  resetIfDrained(): boolean {
    if (!this.empty || this.#fd === undefined) return false;
    if (this.#size === 0) return true;
    ftruncateSync(this.#fd, 0);
    if (fstatSync(this.#fd).size !== 0) return false;
    // Durable before new lines land at 0, so an older offset can never skip them after a power loss.
    fdatasyncSync(this.#fd);
    this.#base += this.#size;
    this.#size = 0;
    this.#offset = 0;
    // Everything before is acknowledged by NATS, which is as good as durable here.
    this.#unsyncedLines = 0;
    this.#markDurable(this.#base);
    this.#generation++;
    this.#backlog = 0;
    this.#delta = 0;
    this.#writeOffset(true);
    return true;
  }

  /**
   * Gives back acknowledged bytes while spans keep coming: once `compactBytes` are acknowledged, an
   * empty tail truncates the file and a short one (≤ 256 KiB, the spans in flight) is copied to a
   * new file, fdatasync'ed and renamed over the old one. Synchronous, so no write interleaves.
   * Returns whether the file changed.
   */
  compact(): boolean {
    const fd = this.#fd;
    if (fd === undefined || this.#offset < this.#compactBytes) return false;
    if (this.empty) return this.resetIfDrained();
    const tail = this.#size - this.#offset;
    if (tail > COMPACT_MAX_TAIL_BYTES) return false;
    const buf = Buffer.alloc(tail);
    readSync(fd, buf, 0, tail, this.#offset);
    const tmpPath = `${this.path}.tmp`;
    const next = openSync(tmpPath, 'w+');
    try {
      let done = 0;
      while (done < tail) done += writeSync(next, buf, done, tail - done, done);
      fdatasyncSync(next);
      renameSync(tmpPath, this.path);
      syncDir(dirname(this.path));
    } catch {
      closeSync(next);
      return false;
    }
    const ino = fstatSync(next).ino;
    if (this.#syncing) this.#retired.push(fd);
    else closeSync(fd);
    this.#fd = next;
    this.#ino = ino;
    this.#base += this.#offset;
    this.#size = tail;
    this.#offset = 0;
    this.#unsyncedLines = 0;
    this.#markDurable(this.end);
    this.#generation++;
    this.#writeOffset(true);
    return true;
  }

  #closeRetired(): void {
    for (const fd of this.#retired.splice(0)) closeSync(fd);
  }

  async close(): Promise<void> {
    await this.synced().catch(() => undefined);
    if (this.#syncing) await this.#syncing;
    await this.counted;
    clearTimeout(this.#syncTimer);
    clearTimeout(this.#offsetTimer);
    this.#offsetTimer = undefined;
    if (!this.resetIfDrained()) this.#writeOffset(false);
    this.#closeRetired();
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/**
 * The saved offset, if it belongs to this file: `<offset> <inode>` (a bare number, as older
 * versions wrote it, is taken for any inode). Anything else, or an offset past the end, is 0:
 * replaying too much only duplicates, skipping too much would lose spans.
 */
function readOffset(path: string, ino: number, size: number): number {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return 0;
  }
  const [offsetText, inoText] = text.split(/\s+/);
  const offset = Number(offsetText);
  if (inoText !== undefined && Number(inoText) !== ino) return 0;
  return Number.isSafeInteger(offset) && offset >= 0 && offset <= size ? offset : 0;
}

/** fsync of a folder, so a rename in it survives a power loss (Linux; elsewhere best effort). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fdatasyncSync(fd);
  } catch {
    // Not every platform lets a directory be synced; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
