/** Pulse over HTTP: audio (WAV or raw PCM) or `{"url":…}` in, one JSON transcript out. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { fnv1aBytes, fnv1aString, FNV_OFFSET } from './hash.ts';
import { BodyTooLargeError, readBody, sendJson } from './http-util.ts';
import { bytesPerSecond } from './stt-audio.ts';
import { parseSttOptions, sttModelServed, type SttOptions } from './stt-options.ts';
import { transcribe } from './stt-transcript.ts';
import { looksLikeWav, parseWav, wavDurationSec } from './wav.ts';

export const MAX_STT_BODY = 250 * 1024 * 1024;
/** Bytes kept from the start of the body: enough for any sane WAV header, and hashed as the seed. */
const HEAD_BYTES = 64 * 1024;
/** Audio reached by URL is not fetched (no network); it is treated as this long. */
export const URL_AUDIO_SECONDS = 5.28;

const urlBody = z.object({ url: z.url() });

function audioError(res: ServerResponse, detail: string): void {
  sendJson(res, 400, { status: 'error', message: 'Error handling audio data', errors: `Invalid file format: ${detail}` });
}

interface Received {
  readonly head: Buffer;
  readonly size: number;
}

/** Streams the body, keeping only its head (bodies may be up to 250 MB). */
function receive(req: IncomingMessage): Promise<Received> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let kept = 0;
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_STT_BODY) {
        reject(new BodyTooLargeError('audio over 250 MB'));
        req.destroy();
        return;
      }
      if (kept < HEAD_BYTES) {
        const take = c.subarray(0, HEAD_BYTES - kept);
        parts.push(take);
        kept += take.length;
      }
    });
    req.on('end', () => resolve({ head: Buffer.concat(parts), size }));
    req.on('error', reject);
  });
}

/** Seconds of audio in the body, or an error text. */
export function bodyDuration(head: Buffer, size: number, opts: SttOptions, contentType: string): number | string {
  if (size === 0) return 'empty body';
  if (looksLikeWav(head)) {
    const info = parseWav(head, size);
    return info ? wavDurationSec(info) : 'malformed WAV header';
  }
  if (/^audio\/(x-)?wav/i.test(contentType) || /^audio\/wave/i.test(contentType)) return 'not a RIFF/WAVE file';
  if (opts.encoding === 'opus' || opts.encoding === 'ogg_opus') return 'the simulator decodes WAV and raw PCM only';
  return size / bytesPerSecond(opts.encoding, opts.sampleRate);
}

/** Handles `POST …/pulse/get_text` and `POST /waves/v1/stt` after authentication. */
export async function handleSttRest(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, pathModel: string | undefined): Promise<void> {
  const parsed = parseSttOptions(query);
  if (!parsed.ok) {
    sendJson(res, 400, { status: 'error', message: parsed.message });
    return;
  }
  const opts = parsed.value;
  const model = pathModel ?? opts.model ?? 'pulse';
  if (!sttModelServed(model, false)) {
    sendJson(res, 404, { status: 'error', error: 'Model not found', message: `Model '${model}' not found` });
    return;
  }
  const contentType = req.headers['content-type'] ?? '';
  let seconds: number;
  let fileSize: number;
  let seed: number;
  try {
    if (/^application\/json/i.test(contentType)) {
      const raw = await readBody(req, 64 * 1024);
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        json = undefined;
      }
      const r = urlBody.safeParse(json);
      if (!r.success) {
        sendJson(res, 400, { status: 'error', message: 'Error handling audio data', errors: 'Body must be audio or {"url": "<audio url>"}' });
        return;
      }
      seconds = URL_AUDIO_SECONDS;
      fileSize = 0;
      seed = fnv1aString(r.data.url);
    } else {
      const { head, size } = await receive(req);
      const d = bodyDuration(head, size, opts, contentType);
      if (typeof d === 'string') {
        audioError(res, d);
        return;
      }
      seconds = d;
      fileSize = size;
      seed = (fnv1aBytes(head, FNV_OFFSET) ^ size) >>> 0;
    }
  } catch (e) {
    if (e instanceof BodyTooLargeError) sendJson(res, 413, { status: 'error', message: 'File too large (max 250 MB)' });
    return;
  }
  const seg = transcribe(seed, seconds, 0, opts, { pii: 0, pci: 0 });
  const answer: Record<string, unknown> = { status: 'success', transcription: seg.transcript };
  if (opts.wordTimestamps) answer['words'] = seg.words;
  if (opts.diarize) {
    answer['utterances'] = seg.words.length ? [{ start: seg.words[0]!.start, end: seg.words.at(-1)!.end, text: seg.transcript, speaker: 0 }] : [];
  }
  if (opts.redactPii || opts.redactPci) answer['redacted_entities'] = seg.redactedEntities;
  answer['metadata'] = { duration: Math.round(seconds * 1000) / 1000, fileSize };
  sendJson(res, 200, answer);
}
