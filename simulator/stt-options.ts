/** Pulse options, read from the query string on both REST and streaming routes. */
import { z } from 'zod';
import { STT_ENCODINGS, STT_SAMPLE_RATES, type SttEncoding } from './stt-audio.ts';

const flag = z.enum(['true', 'false']).optional().transform((v) => v === 'true');

const querySchema = z.object({
  model: z.string().optional(),
  language: z.string().min(1).optional(),
  encoding: z.enum(STT_ENCODINGS).optional(),
  sample_rate: z.coerce.number().pipe(z.literal(STT_SAMPLE_RATES)).optional(),
  word_timestamps: flag,
  diarize: flag,
  redact_pii: flag,
  redact_pci: flag,
});

export interface SttOptions {
  readonly model: string | undefined;
  readonly language: string;
  readonly encoding: SttEncoding;
  readonly sampleRate: number;
  readonly wordTimestamps: boolean;
  readonly diarize: boolean;
  readonly redactPii: boolean;
  readonly redactPci: boolean;
}

export type SttOptionsResult = { ok: true; value: SttOptions } | { ok: false; message: string };

/** Parses the Pulse query parameters (unknown ones are ignored, as the API does). */
export function parseSttOptions(query: URLSearchParams): SttOptionsResult {
  const r = querySchema.safeParse(Object.fromEntries(query));
  if (!r.success) {
    const i = r.error.issues[0]!;
    return { ok: false, message: `Invalid query parameter ${i.path.join('.')}: ${i.message}` };
  }
  const q = r.data;
  return {
    ok: true,
    value: {
      model: q.model,
      language: q.language ?? 'en',
      encoding: q.encoding ?? 'linear16',
      sampleRate: q.sample_rate ?? 16000,
      wordTimestamps: q.word_timestamps,
      diarize: q.diarize,
      redactPii: q.redact_pii,
      redactPci: q.redact_pci,
    },
  };
}

/** Language reported in answers (`multi` and `auto` report the detected one: English here). */
export function reportedLanguage(lang: string): string {
  return lang === 'multi' || lang === 'auto' ? 'en' : lang;
}

/** Whether a model is served on a Pulse route (`pulse-pro` is REST only). */
export function sttModelServed(model: string, streaming: boolean): boolean {
  return model === 'pulse' || (!streaming && model === 'pulse-pro');
}
