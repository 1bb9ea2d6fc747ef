/** How many bytes one second of streamed or raw audio takes, per Pulse `encoding`. */

export const STT_ENCODINGS = ['linear16', 'linear32', 'alaw', 'mulaw', 'opus', 'ogg_opus'] as const;
export type SttEncoding = (typeof STT_ENCODINGS)[number];
export const STT_SAMPLE_RATES = [8000, 16000, 22050, 24000, 44100, 48000] as const;

/** Opus is variable bit rate; the simulator assumes 32 kbit/s (a guess, documented). */
const OPUS_BYTES_PER_SEC = 4000;

export function bytesPerSecond(encoding: SttEncoding, sampleRate: number): number {
  switch (encoding) {
    case 'linear16':
      return sampleRate * 2;
    case 'linear32':
      return sampleRate * 4;
    case 'alaw':
    case 'mulaw':
      return sampleRate;
    default:
      return OPUS_BYTES_PER_SEC;
  }
}

export function isSttEncoding(v: string): v is SttEncoding {
  return (STT_ENCODINGS as readonly string[]).includes(v);
}
