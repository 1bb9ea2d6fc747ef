/** Where finished spans go: NATS (with a disk spool) or a local file. */
import type { UsageSpan } from './span.ts';

export interface SpanSink {
  /** Accepts a span; never throws and never blocks the data path. */
  publish(span: UsageSpan): void;
  /** Resolves when every span accepted so far is acknowledged by NATS or durably on disk. */
  flush(): Promise<void>;
  /** Flushes, then releases connections and files. */
  close(): Promise<void>;
}
