/**
 * Metering from the wire: TTS input characters and STT audio seconds, computed from what the
 * gateway forwards (never from provider usage frames — Smallest sends none).
 */
import { countCodePoints } from '../decision/tts-body.ts';

// Metering counts characters exactly as the decision does (code points; see tts-body.ts).
export { countCodePoints };

/** Audio seconds, rounded to microseconds so that cost arithmetic on them is reproducible. */
export type AudioSeconds = number & { readonly __brand: 'AudioSeconds' };

/** Rounds to 6 decimals (µs); every audio quantity in a span passes through here. */
export function audioSeconds(value: number): AudioSeconds {
  return (Math.round(value * 1e6) / 1e6) as AudioSeconds;
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Parses a JSON object from bytes; undefined when it is not one. */
export function parseJsonObject(bytes: Uint8Array | string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(typeof bytes === 'string' ? bytes : decoder.decode(bytes));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Characters of one client WebSocket TTS message. Whitespace-only texts count 0: Pipecat sends
 * `{"text":" "}` every 30 s as a keepalive, and `{"text":"","flush":true}` ends a stream — neither
 * is speech the caller asked for. Non-JSON or text-less messages count 0.
 */
export function ttsCharactersFromWsMessage(data: Uint8Array | string): number {
  const text = parseJsonObject(data)?.text;
  if (typeof text !== 'string' || text.trim() === '') return 0;
  return countCodePoints(text);
}

export type PcmEncoding = 'linear16' | 'linear32' | 'alaw' | 'mulaw';

const BYTES_PER_SAMPLE: Readonly<Record<PcmEncoding, number>> = { linear16: 2, linear32: 4, alaw: 1, mulaw: 1 };

/** Audio format named by the STT query (`encoding`, `sample_rate`); Pulse's defaults apply. */
export interface SttQueryFormat {
  /** Undefined for compressed encodings (opus, ogg_opus) whose duration bytes cannot tell. */
  readonly bytesPerSample?: number;
  readonly sampleRate: number;
  readonly encoding: string;
  /** Whether the caller named the encoding (REST bodies without it may be any container). */
  readonly explicit: boolean;
}

/** Reads `encoding` (default linear16) and `sample_rate` (default 16000) from a path's query. */
export function sttFormatFromPath(pathWithQuery: string): SttQueryFormat {
  const q = new URLSearchParams(pathWithQuery.includes('?') ? pathWithQuery.slice(pathWithQuery.indexOf('?') + 1) : '');
  const encoding = (q.get('encoding') ?? 'linear16').toLowerCase();
  const rate = Number(q.get('sample_rate') ?? '16000');
  const bps = BYTES_PER_SAMPLE[encoding as PcmEncoding];
  return {
    ...(bps !== undefined ? { bytesPerSample: bps } : {}),
    sampleRate: Number.isFinite(rate) && rate > 0 ? rate : 16000,
    encoding,
    explicit: q.has('encoding'),
  };
}

/** Seconds of raw mono PCM: bytes ÷ (rate × bytes per sample). */
export function pcmSeconds(bytes: number, sampleRate: number, bytesPerSample: number, channels = 1): AudioSeconds {
  return audioSeconds(bytes / (sampleRate * bytesPerSample * channels));
}

export interface WavInfo {
  readonly sampleRate: number;
  readonly channels: number;
  readonly bitsPerSample: number;
  /** Bytes per second of audio, from the fmt chunk. */
  readonly byteRate: number;
  /** Offset of the first audio byte. */
  readonly dataOffset: number;
  /** Declared data size; undefined when the writer left it open (0 or 0xFFFFFFFF, streaming WAV). */
  readonly dataSize?: number;
}

/** Parses a RIFF/WAVE header (walking chunks, so LIST chunks before `data` are fine). */
export function parseWavHeader(head: Uint8Array): WavInfo | undefined {
  if (head.length < 12) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const tag = (o: number) => String.fromCharCode(head[o]!, head[o + 1]!, head[o + 2]!, head[o + 3]!);
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return undefined;
  let off = 12;
  let fmt: Omit<WavInfo, 'dataOffset' | 'dataSize'> | undefined;
  while (off + 8 <= head.length) {
    const id = tag(off);
    const size = view.getUint32(off + 4, true);
    if (id === 'fmt ' && off + 24 <= head.length) {
      fmt = {
        channels: view.getUint16(off + 10, true),
        sampleRate: view.getUint32(off + 12, true),
        byteRate: view.getUint32(off + 16, true),
        bitsPerSample: view.getUint16(off + 22, true),
      };
    } else if (id === 'data') {
      if (!fmt || fmt.byteRate === 0) return undefined;
      const open = size === 0 || size === 0xffffffff;
      return { ...fmt, dataOffset: off + 8, ...(open ? {} : { dataSize: size }) };
    }
    off += 8 + size + (size % 2); // chunks are word-aligned (RIFF spec)
  }
  return undefined;
}

/**
 * Seconds of a WAV body: the declared data size (capped by what was actually sent) ÷ byte rate.
 * `totalBytes` is the whole body length as forwarded.
 */
export function wavSeconds(info: WavInfo, totalBytes: number): AudioSeconds {
  const sent = Math.max(0, totalBytes - info.dataOffset);
  const data = info.dataSize === undefined ? sent : Math.min(info.dataSize, sent);
  return audioSeconds(data / info.byteRate);
}

export interface SttRestMeter {
  readonly seconds?: AudioSeconds;
  /** True when the duration is not read from the audio itself. */
  readonly estimated: boolean;
}

/**
 * Audio seconds of an STT REST body: a WAV header wins; otherwise raw PCM when the query names a
 * PCM encoding; otherwise (mp3, flac, ogg…) the provider's `metadata.duration` from the response
 * body, marked estimated.
 */
export function meterSttRest(head: Uint8Array, totalBytes: number, pathWithQuery: string, responseBody?: Uint8Array): SttRestMeter {
  const wav = parseWavHeader(head);
  if (wav) return { seconds: wavSeconds(wav, totalBytes), estimated: false };
  const fmt = sttFormatFromPath(pathWithQuery);
  if (fmt.explicit && fmt.bytesPerSample !== undefined) {
    return { seconds: pcmSeconds(totalBytes, fmt.sampleRate, fmt.bytesPerSample), estimated: false };
  }
  const duration = responseBody ? parseJsonObject(responseBody)?.metadata : undefined;
  const d = duration && typeof duration === 'object' ? (duration as Record<string, unknown>).duration : undefined;
  if (typeof d === 'number' && Number.isFinite(d) && d >= 0) return { seconds: audioSeconds(d), estimated: true };
  return { estimated: true };
}

/**
 * Watches an SSE response for its first `event: audio` frame across chunk boundaries.
 * Returns a function fed each chunk; it answers true on the chunk that completes the first match.
 */
export function sseAudioDetector(): (chunk: Uint8Array) => boolean {
  let tail = '';
  let found = false;
  return (chunk) => {
    if (found) return false;
    const text = tail + decoder.decode(chunk);
    if (/(^|\n)event:\s?audio\r?\n/.test(text)) {
      found = true;
      return true;
    }
    tail = text.slice(-32);
    return false;
  };
}

/** The `status` of an upstream TTS WebSocket message, or `type` of an STT one. */
export function wsMessageKind(data: Uint8Array): string | undefined {
  const obj = parseJsonObject(data);
  if (!obj) return undefined;
  const kind = obj.status ?? obj.type;
  return typeof kind === 'string' ? kind : undefined;
}
