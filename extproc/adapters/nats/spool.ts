/**
 * Append-only disk spool for spans NATS could not take: JSON lines in `<dir>/spool.jsonl`, plus
 * `spool.offset` holding how many bytes have been replayed. The name is not `spans.jsonl` on
 * purpose: that is the file sink's output in the same folder (`--spool-dir`), and a file-mode run
 * followed by a NATS run must never replay the file-mode spans as if NATS had refused them.
 *
 * Durability: appends are grouped per event-loop turn and each group is fdatasync'ed before its
 * promise resolves, so a span is on disk once `append()` settles; a crash loses at most the group
 * being written. The offset file is rewritten (not fsynced) after each replayed batch: after a
 * crash a few spans may be replayed twice, which NATS (Nats-Msg-Id) and the aggregator (span id
 * primary key) both absorb. A torn last line is skipped on replay.
 *
 * Size: the file may not grow past `maxBytes` (default 256 MiB). When a group does not fit, the
 * newest spans are refused and `append()` reports how many, so the caller can count and log them:
 * the spans already on disk are older and keep their place in the replay order, and nothing is
 * rewritten in place. The cap counts the file as it is on disk, replayed bytes included, because
 * that is what fills the volume; the file is emptied once fully replayed.
 *
 * Start: nothing is read whole. What is left to replay is counted in the background over a
 * stream (for the gauge only) and replay reads bounded chunks, so a large spool neither delays the
 * listeners nor blocks the event loop.
 */
import { createReadStream, mkdirSync, openSync, closeSync, fstatSync, writeFileSync, ftruncateSync } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** What the NATS sink may keep on disk while NATS is away, unless configured otherwise. */
export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SPOOL_NAME = 'spool';
/** One replay read; far above any span line (a span's longest field is a path of a few KiB). */
const READ_CHUNK_BYTES = 256 * 1024;

export interface SpoolOptions {
  /** File stem: `<name>.jsonl` and `<name>.offset` (default `spool`). */
  readonly name?: string;
  /** Largest size of the spool file; newer spans that do not fit are refused (default 256 MiB). */
  readonly maxBytes?: number;
}

export interface SpoolBatch {
  readonly lines: string[];
  /** Offset to commit once the batch is published. */
  readonly nextOffset: number;
}

export interface AppendResult {
  /** Lines of this append that were not written because the spool is full. */
  readonly refused: number;
}

interface Waiter {
  readonly count: number;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

export class Spool {
  readonly path: string;
  readonly maxBytes: number;
  /** Settles once the spans left over from an earlier run have been counted. */
  readonly counted: Promise<void>;
  readonly #offsetPath: string;
  #fh: FileHandle | undefined;
  #size = 0;
  #offset = 0;
  // Lines found at open (undefined until counted) plus lines appended minus lines committed since.
  #backlog: number | undefined = 0;
  #delta = 0;
  // Bumped by a reset, so a count that started before it is discarded.
  #generation = 0;
  #pending: string[] = [];
  #waiters: Waiter[] = [];
  #writing: Promise<void> = Promise.resolve();
  #scheduled = false;

  private constructor(dir: string, name: string, maxBytes: number, fh: FileHandle, size: number, offset: number) {
    this.path = join(dir, `${name}.jsonl`);
    this.#offsetPath = join(dir, `${name}.offset`);
    this.maxBytes = maxBytes;
    this.#fh = fh;
    this.#size = size;
    this.#offset = offset;
    this.counted = size > offset ? this.#countBacklog() : Promise.resolve();
  }

  /** Opens (creating if needed) the spool; resolves without reading what is left to replay. */
  static async open(dir: string, opts: SpoolOptions = {}): Promise<Spool> {
    const name = opts.name ?? DEFAULT_SPOOL_NAME;
    const maxBytes = opts.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0)) throw new RangeError(`spool maxBytes must be a positive integer, got ${maxBytes}`);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${name}.jsonl`);
    closeSync(openSync(path, 'a'));
    const fh = await open(path, 'r+');
    const size = (await fh.stat()).size;
    const saved = Number((await readFile(join(dir, `${name}.offset`), 'utf8').catch(() => '0')).trim());
    const offset = Number.isSafeInteger(saved) && saved >= 0 && saved <= size ? saved : 0;
    return new Spool(dir, name, maxBytes, fh, size, offset);
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

  /** Bytes not yet replayed. */
  get bytes(): number {
    return this.#size - this.#offset;
  }

  /** Bytes in the spool file, replayed ones included (what the cap limits). */
  get fileBytes(): number {
    return this.#size;
  }

  /** Byte offset replay has reached. */
  get offset(): number {
    return this.#offset;
  }

  /** Spans not yet replayed (including those being written); an undercount until {@link counted}. */
  get spans(): number {
    return Math.max(0, (this.#backlog ?? 0) + this.#delta) + this.#pending.length;
  }

  /** True when nothing is waiting on disk or being written. */
  get empty(): boolean {
    return this.#size === this.#offset && this.#pending.length === 0 && !this.#scheduled;
  }

  /**
   * Appends lines (no newlines inside); resolves once those that fit are fdatasync'ed, with the
   * number refused because the spool is full.
   */
  append(lines: readonly string[]): Promise<AppendResult> {
    this.#pending.push(...lines);
    const done = new Promise<AppendResult>((resolve, reject) => this.#waiters.push({ count: lines.length, resolve, reject }));
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#writing = this.#writing.then(() => this.#writeGroup());
      });
    }
    return done;
  }

  /** Resolves when every append so far is on disk. */
  async settled(): Promise<void> {
    while (this.#scheduled) await this.#writing.then(() => new Promise((r) => setImmediate(r)));
    await this.#writing;
  }

  async #writeGroup(): Promise<void> {
    const lines = this.#pending;
    const waiters = this.#waiters;
    this.#pending = [];
    this.#waiters = [];
    this.#scheduled = false;
    // Oldest first: take lines in order while they fit; from the first that does not, refuse the
    // rest, so what is on disk is always a prefix of what was offered.
    const parts: Buffer[] = [];
    let bytes = 0;
    for (const line of lines) {
      const b = Buffer.from(`${line}\n`);
      if (this.#size + bytes + b.length > this.maxBytes) break;
      parts.push(b);
      bytes += b.length;
    }
    const accepted = parts.length;
    const settle = () => {
      let index = 0;
      for (const w of waiters) {
        const mine = Math.max(0, Math.min(w.count, accepted - index));
        index += w.count;
        w.resolve({ refused: w.count - mine });
      }
    };
    if (accepted === 0) return settle();
    const buf = Buffer.concat(parts, bytes);
    try {
      await this.#fh!.write(buf, 0, buf.length, this.#size);
      await this.#fh!.datasync();
      this.#size += buf.length;
      this.#delta += accepted;
      settle();
    } catch (err) {
      for (const w of waiters) w.reject(err);
    }
  }

  /** Reads up to `max` complete lines from the replay offset. */
  async read(max: number, maxBytes = READ_CHUNK_BYTES): Promise<SpoolBatch> {
    const len = Math.min(this.#size - this.#offset, maxBytes);
    if (len <= 0) return { lines: [], nextOffset: this.#offset };
    const buf = Buffer.alloc(len);
    await this.#fh!.read(buf, 0, len, this.#offset);
    const lines: string[] = [];
    let start = 0;
    for (let i = buf.indexOf(10); i !== -1 && lines.length < max; i = buf.indexOf(10, start)) {
      lines.push(buf.toString('utf8', start, i));
      start = i + 1;
    }
    if (lines.length === 0 && len === maxBytes) {
      // A single line longer than maxBytes cannot be a span; skip it rather than stall forever.
      return { lines: [], nextOffset: this.#offset + len };
    }
    return { lines, nextOffset: this.#offset + start };
  }

  /** Marks everything before `offset` as replayed. */
  commit(offset: number, spans: number): void {
    this.#offset = offset;
    this.#delta -= spans;
    writeFileSync(this.#offsetPath, String(offset));
  }

  /**
   * Empties the spool once fully replayed. Synchronous on purpose: no append can slip in between
   * the truncation and the offset reset.
   */
  resetIfDrained(): boolean {
    if (!this.empty) return false;
    const fd = openSync(this.path, 'r+');
    try {
      ftruncateSync(fd, 0);
      if (fstatSync(fd).size !== 0) return false;
    } finally {
      closeSync(fd);
    }
    writeFileSync(this.#offsetPath, '0');
    this.#size = 0;
    this.#offset = 0;
    this.#generation++;
    this.#backlog = 0;
    this.#delta = 0;
    return true;
  }

  async close(): Promise<void> {
    await this.settled();
    await this.counted;
    await this.#fh?.close();
    this.#fh = undefined;
  }
}
