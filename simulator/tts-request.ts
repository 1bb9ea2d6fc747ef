/** Lightning request bodies: the fields, their validation and model names, as the API has them. */
import { z } from 'zod';
import { OUTPUT_FORMATS } from './audio-encode.ts';
import { toV3Issue, type V3Issue } from './zod-v3-issues.ts';

/** Voices the simulator knows; any other `voice_id` gets the wire's "Invalid Voice ID". */
export const VOICES: ReadonlySet<string> = new Set([
  'magnus', 'sophia', 'daniel', 'rachel', 'avery', 'liam', 'meher', 'emily', 'jasmine', 'arman',
  'james', 'mithali', 'aravind', 'raj', 'arnav', 'aditi', 'ishika', 'karen', 'george', 'lucas',
]);

export const LANGUAGES = [
  'auto', 'en', 'hi', 'ta', 'te', 'ml', 'kn', 'mr', 'gu', 'bn', 'es', 'fr', 'de', 'it', 'pt', 'sv', 'nl', 'pl', 'ru', 'ar', 'he',
] as const;

export const SAMPLE_RATES = [8000, 16000, 24000, 44100] as const;
export type SampleRate = (typeof SAMPLE_RATES)[number];

const externalId = z.string().max(128).regex(/^[A-Za-z0-9_.-]+$/);

const common = {
  model: z.string().optional(),
  sample_rate: z.literal(SAMPLE_RATES).optional(),
  speed: z.number().min(0.5).max(2).optional(),
  language: z.enum(LANGUAGES).optional(),
  output_format: z.enum(OUTPUT_FORMATS).optional(),
  pronunciation_dicts: z.array(z.string()).optional(),
  session_id: externalId.optional(),
  request_id: externalId.optional(),
};

const voiceId = z.string().refine((v) => VOICES.has(v), { message: 'Invalid Voice ID' });

/** Body of `get_speech`, `stream` and the unified `/waves/v1/tts[/live]` POSTs. */
export const ttsBodySchema = z.object({ text: z.string().min(1), voice_id: voiceId, ...common });
export type TtsBody = z.infer<typeof ttsBodySchema>;

/** One client frame on the TTS WebSocket; `text` may be empty (`{"text":"","flush":true}`). */
export const ttsWsMessageSchema = z.object({
  text: z.string(),
  voice_id: voiceId.optional(),
  ...common,
  continue: z.boolean().optional(),
  flush: z.boolean().optional(),
  max_buffer_flush_ms: z.number().min(0).max(1000).optional(),
  complete_backoff_ms: z.number().min(0).max(10000).optional(),
  word_timestamps: z.boolean().optional(),
});
export type TtsWsMessage = z.infer<typeof ttsWsMessageSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; issues: V3Issue[] };

/** Validates with zod and reports failures as Smallest's zod-v3 issue array. */
export function parseWith<T>(schema: z.ZodType<T>, input: unknown): Parsed<T> {
  const r = schema.safeParse(input);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, issues: r.error.issues.map((i) => toV3Issue(i, input)) };
}

export type ModelLookup = 'current' | 'retired' | 'unknown';

const RETIRED = new Set(['lightning', 'lightning-large', 'lightning-v2']);
const CURRENT = new Set(['lightning-v3.1', 'lightning-v3.1-pro']);

/** Classifies a TTS model named in a path (`lightning-v3.1`) or a body (`lightning_v3.1_pro`). */
export function lookupTtsModel(name: string): ModelLookup {
  const n = name.replaceAll('_', '-');
  if (CURRENT.has(n)) return 'current';
  if (RETIRED.has(n)) return 'retired';
  return 'unknown';
}

/** Model used on unified routes when the body names none. */
export const DEFAULT_TTS_MODEL = 'lightning_v3.1';
