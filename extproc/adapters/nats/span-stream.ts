/** The JetStream stream that carries spans, and the subjects spans are published on. */
import { nanos, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from 'nats';
import { subjectToken, type UsageSpan } from '../../core/usage/span.ts';

export const DEFAULT_STREAM = 'VOICEGATE_SPANS';
export const DEFAULT_SUBJECT_PREFIX = 'voicegate.spans';

export interface SpanStreamOptions {
  readonly name?: string;
  /** Subjects are `<prefix>.<provider>.<model>`; the stream listens on `<prefix>.>`. */
  readonly subjectPrefix?: string;
  /** JetStream de-duplication window on Nats-Msg-Id (default 2 minutes). */
  readonly duplicateWindowMs?: number;
  /** How long spans stay in the stream (default 7 days); consumers must catch up within it. */
  readonly maxAgeMs?: number;
}

/** The subject one span is published on. */
export function spanSubject(prefix: string, span: Pick<UsageSpan, 'provider' | 'model'>): string {
  return `${prefix}.${subjectToken(span.provider)}.${subjectToken(span.model)}`;
}

/** Creates the stream, or updates it to the wanted config when it exists. */
export async function ensureSpanStream(jsm: JetStreamManager, opts: SpanStreamOptions = {}): Promise<string> {
  const name = opts.name ?? DEFAULT_STREAM;
  const config: Partial<StreamConfig> & { name: string } = {
    name,
    subjects: [`${opts.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    duplicate_window: nanos(opts.duplicateWindowMs ?? 120_000),
    max_age: nanos(opts.maxAgeMs ?? 7 * 24 * 3600_000),
  };
  try {
    await jsm.streams.info(name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add(config);
    return name;
  }
  await jsm.streams.update(name, config);
  return name;
}

/** nats.js reports a missing stream or consumer with a 404 / "not found" message. */
export function isNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as Error & { code?: string }).code;
  return code === '404' || /not found/i.test(err.message);
}
