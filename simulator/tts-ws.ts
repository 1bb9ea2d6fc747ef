/**
 * Lightning over WebSocket: JSON frames in, JSON frames out, many requests per connection.
 *
 * Buffering follows the documented flags: `continue: true` buffers text, `flush: true` (or a
 * message without `continue`) synthesises the buffer, `max_buffer_flush_ms` flushes a buffer left
 * alone that long. Requests on one socket are synthesised in order, each taking one of the key's
 * units while its chunks are produced; `complete` goes out once `complete_backoff_ms` passed
 * without a new chunk, so close requests share one.
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { Accounts, type AccountState } from './accounts.ts';
import { base64Chunks, speech } from './audio-encode.ts';
import type { SimContext } from './context.ts';
import { runPaced, type Cancellable } from './pacing.ts';
import { RATE_LIMIT_BODY } from './scripting.ts';
import { parseWith, ttsWsMessageSchema, type TtsWsMessage } from './tts-request.ts';

/** Bytes of encoded audio per `chunk` frame. */
export const WS_CHUNK_BYTES = 4096;
export const DEFAULT_COMPLETE_BACKOFF_MS = 4000;
export const DEFAULT_IDLE_TIMEOUT_SEC = 60;

interface Job {
  readonly text: string;
  readonly params: TtsWsMessage;
  readonly voiceId: string;
}

interface WordTiming {
  readonly word: string;
  readonly start: number;
  readonly end: number;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Word boundaries spread over the audio in proportion to character offsets. */
export function wordTimings(text: string, seconds: number): WordTiming[] {
  const out: WordTiming[] = [];
  const perChar = seconds / Math.max(1, text.length);
  for (const m of text.matchAll(/\S+/g)) {
    const start = m.index;
    out.push({ word: m[0], start: round2(start * perChar), end: round2((start + m[0].length) * perChar) });
  }
  return out;
}

/** Parses `?timeout=N` (seconds, fractions allowed for tests); default 60. */
export function idleTimeoutSec(query: URLSearchParams): number {
  const t = Number(query.get('timeout'));
  return query.has('timeout') && Number.isFinite(t) && t > 0 ? t : DEFAULT_IDLE_TIMEOUT_SEC;
}

/** One TTS WebSocket connection. */
export class TtsSocketSession {
  readonly #sessionId = `ws_${randomUUID()}`;
  readonly #queue: Job[] = [];
  #buffer = '';
  #bufferParams: TtsWsMessage | undefined;
  #bufferTimer: NodeJS.Timeout | undefined;
  #completeTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #running: Cancellable | undefined;
  #closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly ctx: SimContext,
    private readonly account: AccountState,
    private readonly idleSec: number,
  ) {
    Accounts.openTtsSocket(account);
    ws.on('message', (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on('close', () => this.#onClose());
    ws.on('error', () => ws.terminate());
    this.#touch();
  }

  #send(frame: string): void {
    if (!this.#closed) this.ws.send(frame);
  }

  #error(message: string, extra?: Record<string, string>): void {
    this.#send(JSON.stringify({ status: 'error', ...extra, message, error: message }));
  }

  #touch(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      this.#error(`Connection timed out after ${this.idleSec} seconds of inactivity`);
      this.ws.close(1000, 'idle timeout');
    }, this.idleSec * 1000);
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    this.#touch();
    if (isBinary) return this.#error('Binary frames are not supported; send JSON text frames');
    let json: unknown;
    try {
      json = JSON.parse(data.toString('utf8'));
    } catch {
      return this.#error('Invalid JSON message');
    }
    const parsed = parseWith(ttsWsMessageSchema, json);
    if (!parsed.ok) {
      const first = parsed.issues[0];
      const where = Array.isArray(first?.['path']) ? (first['path'] as unknown[]).join('.') : '';
      return this.#error(`Invalid request: ${where ? `${where}: ` : ''}${String(first?.['message'] ?? 'invalid')}`);
    }
    const msg = parsed.value;
    if (msg.continue === true && msg.flush !== true) {
      this.#buffer += msg.text;
      this.#bufferParams = { ...this.#bufferParams, ...msg };
      if (this.#bufferTimer) clearTimeout(this.#bufferTimer);
      const after = this.#bufferParams.max_buffer_flush_ms;
      if (after !== undefined) this.#bufferTimer = setTimeout(() => this.#flushBuffer(undefined), after);
      return;
    }
    this.#flushBuffer(msg);
  }

  /** Turns the buffer (plus `msg`'s text) into a job; whitespace alone is a keepalive. */
  #flushBuffer(msg: TtsWsMessage | undefined): void {
    if (this.#bufferTimer) clearTimeout(this.#bufferTimer);
    this.#bufferTimer = undefined;
    const text = this.#buffer + (msg?.text ?? '');
    const params: TtsWsMessage = { ...this.#bufferParams, ...msg, text };
    this.#buffer = '';
    this.#bufferParams = undefined;
    if (text.trim() === '') return;
    const voiceId = params.voice_id;
    if (voiceId === undefined) return this.#error('voice_id is required');
    this.#queue.push({ text, params, voiceId });
    this.#next();
  }

  #next(): void {
    if (this.#running || this.#closed) return;
    const job = this.#queue.shift();
    if (!job) return;
    const ext = job.params.request_id !== undefined ? { external_request_id: job.params.request_id } : undefined;
    if (!Accounts.acquireTts(this.account)) {
      this.#error(RATE_LIMIT_BODY.error, ext);
      return this.#next();
    }
    const token: Cancellable = { cancelled: false };
    this.#running = token;
    const requestId = `task_${randomUUID()}`;
    const head = `{"session_id":${JSON.stringify(this.#sessionId)},"request_id":${JSON.stringify(requestId)}${
      ext ? `,"external_request_id":${JSON.stringify(ext.external_request_id)}` : ''
    },"status":`;
    const p = job.params;
    const audio = speech(job.text, p.sample_rate ?? 44100, p.speed ?? 1, p.output_format ?? 'pcm');
    const chunks = base64Chunks(audio, WS_CHUNK_BYTES);
    const total = audio.bytes.length;
    const endSec = (i: number): number => (audio.seconds * Math.min(total, (i + 1) * WS_CHUNK_BYTES)) / total;
    const words = p.word_timestamps ? wordTimings(job.text, audio.seconds) : [];
    let w = 0;
    const backoff = p.complete_backoff_ms ?? DEFAULT_COMPLETE_BACKOFF_MS;
    runPaced(
      this.ctx.pacing,
      chunks.length,
      endSec,
      (i) => {
        if (this.#completeTimer) clearTimeout(this.#completeTimer);
        this.#completeTimer = undefined;
        this.#send(`${head}"chunk","data":{"audio":"${chunks[i]!}"}}`);
        const until = i === chunks.length - 1 ? Number.POSITIVE_INFINITY : endSec(i);
        for (; w < words.length && words[w]!.end <= until; w++) {
          const t = words[w]!;
          this.#send(`${head}"word_timestamp","data":${JSON.stringify({ id: w + 1, word: t.word, start: t.start, end: t.end })}}`);
        }
      },
      () => {
        Accounts.releaseTts(this.account);
        this.#running = undefined;
        this.#touch();
        this.#completeTimer = setTimeout(() => {
          this.#completeTimer = undefined;
          this.#send(`${head}"complete"}`);
        }, backoff);
        this.#next();
      },
      token,
    );
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.account.ttsSockets--;
    for (const t of [this.#bufferTimer, this.#completeTimer, this.#idleTimer]) if (t) clearTimeout(t);
    if (this.#running) {
      this.#running.cancelled = true;
      this.#running = undefined;
      Accounts.releaseTts(this.account);
    }
    this.#queue.length = 0;
  }
}
