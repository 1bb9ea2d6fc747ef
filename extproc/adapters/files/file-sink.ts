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
    mkdirSync(dirname(path), { recursive: true });
    this.#fh = open(path, 'a');
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
    const line = `${JSON.stringify(span)}\n`;
    this.#chain = this.#chain
      .then(async () => {
        await (await this.#fh).appendFile(line);
      })
      .catch((err: unknown) => this.#log.error({ err: err instanceof Error ? err.message : String(err) }, 'usage file write failed'));
  }

  async flush(): Promise<void> {
    await this.#chain;
  }

  async close(): Promise<void> {
    await this.flush();
    await (await this.#fh).close();
  }
}
