/** Turns synthesized PCM into each Lightning output format, with a small cache for repeats. */
import { encodeG711 } from './g711.ts';
import { silentMp3 } from './mp3-silence.ts';
import { speechSamples, synthesizePcm } from './synth.ts';
import { WAVE_FORMAT, wavHeader } from './wav.ts';

export const OUTPUT_FORMATS = ['wav', 'ulaw', 'alaw', 'pcm', 'mp3'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface SpeechAudio {
  /** Encoded bytes exactly as sent on the wire. */
  readonly bytes: Buffer;
  /** Seconds of speech they hold. */
  readonly seconds: number;
  /** Base64 of each `chunkBytes` slice, filled lazily per chunk size (SSE / WebSocket). */
  readonly base64Chunks: Map<number, readonly string[]>;
}

/** Encodes s16le PCM to a Lightning output format (samples count kept for mp3 framing). */
export function encodeSpeech(pcm: Buffer, format: OutputFormat, sampleRate: number): Buffer {
  switch (format) {
    case 'pcm':
      return pcm;
    case 'wav':
      return Buffer.concat([wavHeader(pcm.length, sampleRate, 16, WAVE_FORMAT.pcm), pcm]);
    case 'ulaw':
    case 'alaw':
      return encodeG711(pcm, format);
    case 'mp3':
      return silentMp3(pcm.length >> 1, sampleRate);
  }
}

const CACHE_ENTRIES = 256;
const CACHE_BYTES = 64 * 1024 * 1024;
const cache = new Map<string, SpeechAudio>();
let cacheBytes = 0;

/**
 * The speech for one synthesis request. Benchmarks repeat the same few sentences, so results are
 * kept in a small LRU (Map insertion order); a hit costs one string key and no audio work.
 */
export function speech(text: string, sampleRate: number, speed: number, format: OutputFormat): SpeechAudio {
  const key = `${format}|${sampleRate}|${speed}|${text}`;
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const pcm = synthesizePcm(text, sampleRate, speed);
  const value: SpeechAudio = {
    bytes: encodeSpeech(pcm, format, sampleRate),
    seconds: speechSamples(text, sampleRate, speed) / sampleRate,
    base64Chunks: new Map(),
  };
  cache.set(key, value);
  // base64 chunks added later roughly double an entry; count that up front
  cacheBytes += value.bytes.length * 3;
  while (cache.size > CACHE_ENTRIES || (cacheBytes > CACHE_BYTES && cache.size > 1)) {
    const [oldKey, old] = cache.entries().next().value!;
    cache.delete(oldKey);
    cacheBytes -= old.bytes.length * 3;
  }
  return value;
}

/** Base64 of consecutive `chunkBytes` slices of the audio (cached on the entry). */
export function base64Chunks(audio: SpeechAudio, chunkBytes: number): readonly string[] {
  let chunks = audio.base64Chunks.get(chunkBytes);
  if (!chunks) {
    const out: string[] = [];
    for (let o = 0; o < audio.bytes.length; o += chunkBytes) {
      out.push(audio.bytes.toString('base64', o, Math.min(o + chunkBytes, audio.bytes.length)));
    }
    chunks = out;
    audio.base64Chunks.set(chunkBytes, chunks);
  }
  return chunks;
}
