/**
 * SpanSink for running without NATS: appends each span as a JSON line to a local file and logs a
 * one-line summary per request, so `npm start` shows usage with no infrastructure.
 */
import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { UsageSpan } from '../../core/usage/span.ts';
import type { SpanSink } from '../../core/usage/span-sink.ts';

export class FileSpanSink implements SpanSink {
  readonly path: string;
  readonly #log: Logger;
  #fh: Promise<FileHandle>;
  #chain: Promise<void> = Promise.resolve();

  /** `path` is created (with its folder) if missing; spans are appended. */
  constructor(path: string, logger: Logger) {
    this.path = path;
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
    const line = `${JSON.stringify(span)}\n`;
    this.#chain = this.#chain
      .then(async () => {
        await (await this.#fh).appendFile(line);
      })
      .catch((err: unknown) => {
        // The open failure was logged once already.
        if (!this.#unavailable) this.#log.error({ err: err instanceof Error ? err.message : String(err) }, 'usage file write failed');
      });
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
