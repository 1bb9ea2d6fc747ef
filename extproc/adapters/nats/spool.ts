/**
 * Append-only disk spool for spans NATS could not take: JSON lines in `<dir>/<name>.jsonl`, plus
 * `<name>.offset` holding how many bytes have been replayed.
 *
 * Durability: appends are grouped per event-loop turn and each group is fdatasync'ed before its
 * promise resolves, so a span is on disk once `append()` settles; a crash loses at most the group
 * being written. The offset file is rewritten (not fsynced) after each replayed batch: after a
 * crash a few spans may be replayed twice, which NATS (Nats-Msg-Id) and the aggregator (span id
 * primary key) both absorb. A torn last line is skipped on replay.
 */
import { mkdirSync, openSync, closeSync, fstatSync, readFileSync, writeFileSync, ftruncateSync, existsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export interface SpoolBatch {
  readonly lines: string[];
  /** Offset to commit once the batch is published. */
  readonly nextOffset: number;
}

export class Spool {
  readonly path: string;
  readonly #offsetPath: string;
  #fh: FileHandle | undefined;
  #size = 0;
  #offset = 0;
  #spans = 0;
  #pending: string[] = [];
  #waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  #writing: Promise<void> = Promise.resolve();
  #scheduled = false;

  private constructor(dir: string, name: string) {
    this.path = join(dir, `${name}.jsonl`);
    this.#offsetPath = join(dir, `${name}.offset`);
  }

  /** Opens (creating if needed) the spool and counts what is left to replay. */
  static async open(dir: string, name = 'spans'): Promise<Spool> {
    mkdirSync(dir, { recursive: true });
    const s = new Spool(dir, name);
    closeSync(openSync(s.path, 'a'));
    s.#fh = await open(s.path, 'r+');
    s.#size = (await s.#fh.stat()).size;
    const saved = existsSync(s.#offsetPath) ? Number(readFileSync(s.#offsetPath, 'utf8').trim()) : 0;
    s.#offset = Number.isSafeInteger(saved) && saved >= 0 && saved <= s.#size ? saved : 0;
    if (s.#size > s.#offset) {
      const rest = readFileSync(s.path).subarray(s.#offset);
      for (const b of rest) if (b === 10) s.#spans++;
    }
    return s;
  }

  /** Bytes not yet replayed. */
  get bytes(): number {
    return this.#size - this.#offset;
  }

  /** Byte offset replay has reached. */
  get offset(): number {
    return this.#offset;
  }

  /** Spans not yet replayed (including those being written). */
  get spans(): number {
    return this.#spans + this.#pending.length;
  }

  /** True when nothing is waiting on disk or being written. */
  get empty(): boolean {
    return this.#size === this.#offset && this.#pending.length === 0 && !this.#scheduled;
  }

  /** Appends lines (no newlines inside); resolves once they are fdatasync'ed. */
  append(lines: readonly string[]): Promise<void> {
    this.#pending.push(...lines);
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
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
    const buf = Buffer.from(lines.map((l) => `${l}\n`).join(''));
    try {
      await this.#fh!.write(buf, 0, buf.length, this.#size);
      await this.#fh!.datasync();
      this.#size += buf.length;
      this.#spans += lines.length;
      for (const w of waiters) w.resolve();
    } catch (err) {
      for (const w of waiters) w.reject(err);
    }
  }

  /** Reads up to `max` complete lines from the replay offset. */
  async read(max: number, maxBytes = 1 << 20): Promise<SpoolBatch> {
    const len = Math.min(this.#size - this.#offset, maxBytes);
    if (len <= 0) return { lines: [], nextOffset: this.#offset };
    const buf = Buffer.alloc(len);
    await this.#fh!.read(buf, 0, len, this.#offset);
    const lines: string[] = [];
    let start = 0;
    let consumed = 0;
    for (let i = 0; i < len && lines.length < max; i++) {
      if (buf[i] === 10) {
        lines.push(buf.toString('utf8', start, i));
        start = i + 1;
        consumed = start;
      }
    }
    if (lines.length === 0 && len === maxBytes) {
      // A single line longer than maxBytes cannot be a span; skip it rather than stall forever.
      return { lines: [], nextOffset: this.#offset + len };
    }
    return { lines, nextOffset: this.#offset + consumed };
  }

  /** Marks everything before `offset` as replayed. */
  commit(offset: number, spans: number): void {
    this.#offset = offset;
    this.#spans = Math.max(0, this.#spans - spans);
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
    this.#spans = 0;
    return true;
  }

  async close(): Promise<void> {
    await this.settled();
    await this.#fh?.close();
    this.#fh = undefined;
  }
}
