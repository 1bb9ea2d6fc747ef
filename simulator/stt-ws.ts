/**
 * Pulse streaming: binary audio in, `transcription` frames out, paced by the audio received (not
 * by the clock): a partial every quarter second of audio, a final per second, a final on
 * `{"type":"finalize"}`, and a last one (`is_last: true`) on `close_stream` / `end`, after which
 * the server closes normally (1000).
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { Accounts, type AccountState } from './accounts.ts';
import { fnv1aBytes, FNV_OFFSET } from './hash.ts';
import { bytesPerSecond } from './stt-audio.ts';
import { reportedLanguage, type SttOptions } from './stt-options.ts';
import { transcribe, type RedactionCounters } from './stt-transcript.ts';

const FINAL_EVERY_SEC = 1;
const PARTIAL_EVERY_SEC = 0.25;

/** One Pulse streaming WebSocket. */
export class SttSocketSession {
  readonly #sessionId = randomUUID();
  readonly #bytesPerSec: number;
  readonly #segmentBytes: number;
  readonly #partialBytes: number;
  readonly #language: string;
  readonly #counters: RedactionCounters = { pii: 0, pci: 0 };
  #segBytes = 0;
  #segHash = FNV_OFFSET;
  #lastPartialAt = 0;
  #offsetSec = 0;
  #ending = false;
  #closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly account: AccountState,
    private readonly opts: SttOptions,
  ) {
    Accounts.openSttSocket(account);
    this.#bytesPerSec = bytesPerSecond(opts.encoding, opts.sampleRate);
    this.#segmentBytes = Math.round(this.#bytesPerSec * FINAL_EVERY_SEC);
    this.#partialBytes = Math.max(1, Math.round(this.#bytesPerSec * PARTIAL_EVERY_SEC));
    this.#language = reportedLanguage(opts.language);
    ws.on('message', (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    ws.on('close', () => this.#onClose());
    ws.on('error', () => ws.terminate());
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.#ending) return;
    if (isBinary) return this.#onAudio(data);
    let type: unknown;
    try {
      type = (JSON.parse(data.toString('utf8')) as { type?: unknown }).type;
    } catch {
      type = undefined;
    }
    if (type === 'finalize') return this.#final(false);
    if (type === 'close_stream' || type === 'end') {
      this.#ending = true;
      this.#final(true);
      this.ws.close(1000, 'stream closed');
      return;
    }
    const message = 'Unsupported message: send binary audio, {"type":"finalize"} or {"type":"close_stream"}';
    this.#send({ type: 'error', message, error: message });
  }

  #onAudio(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, this.#segmentBytes - this.#segBytes);
      this.#segHash = fnv1aBytes(chunk, this.#segHash, off, off + take);
      this.#segBytes += take;
      off += take;
      if (this.#segBytes >= this.#segmentBytes) this.#final(false);
      else if (this.#segBytes - this.#lastPartialAt >= this.#partialBytes) {
        this.#lastPartialAt = this.#segBytes;
        this.#partial();
      }
    }
  }

  #segmentSeconds(): number {
    return this.#segBytes / this.#bytesPerSec;
  }

  #partial(): void {
    // a copy of the counters: partials must not consume placeholder numbers
    const seg = transcribe(this.#segHash, this.#segmentSeconds(), this.#offsetSec, this.opts, { ...this.#counters });
    const frame: Record<string, unknown> = this.#frame(seg.transcript, false, false);
    if (this.opts.wordTimestamps) frame['words'] = seg.words;
    this.#send(frame);
  }

  #final(isLast: boolean): void {
    const seconds = this.#segmentSeconds();
    const seg = transcribe(this.#segHash, seconds, this.#offsetSec, this.opts, this.#counters);
    const frame = this.#frame(seg.transcript, true, isLast);
    if (this.opts.wordTimestamps) frame['words'] = seg.words;
    if (this.opts.redactPii || this.opts.redactPci) frame['redacted_entities'] = seg.redactedEntities;
    this.#send(frame);
    this.#offsetSec += seconds;
    this.#segBytes = 0;
    this.#segHash = FNV_OFFSET;
    this.#lastPartialAt = 0;
  }

  #frame(transcript: string, isFinal: boolean, isLast: boolean): Record<string, unknown> {
    return { type: 'transcription', session_id: this.#sessionId, transcript, is_final: isFinal, is_last: isLast, language: this.#language };
  }

  #send(frame: Record<string, unknown>): void {
    if (!this.#closed) this.ws.send(JSON.stringify(frame));
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.account.sttSockets--;
  }
}
