/**
 * Implements the edge's ExchangeObserverFactory: watches one exchange as the embedded edge proxies
 * it, keeps only what its endpoint's meter needs, and hands {@link ExchangeFacts} to the one span
 * builder at `end()`. Prices come from the snapshot the exchange arrived with, not the one in
 * force when it ends.
 */
import type { Exchange } from '../exchange/exchange.ts';
import { headerValue } from '../exchange/exchange.ts';
import type { ExchangeEnd, ExchangeObserver, ExchangeObserverFactory } from '../exchange/exchange-observer.ts';
import type { Decision } from '../decision/types.ts';
import type { Meter } from '../catalogue/endpoints.ts';
import type { SpanSink } from './span-sink.ts';
import {
  audioSeconds,
  meterSttRest,
  parseWavHeader,
  pcmSeconds,
  sseAudioDetector,
  sttFormatFromPath,
  ttsCharactersFromWsMessage,
  wsMessageKind,
} from './metering.ts';
import { bodyCharacters, buildSpan, meterOf, type Usage } from './span-builder.ts';
import { newSpanId } from './span.ts';

/**
 * Request bytes kept on STT REST routes: enough for a RIFF header with the usual LIST/INFO chunks
 * before `data`; the rest of the audio is only counted.
 */
export const WAV_HEAD_BYTES = 8 << 10;
/** Largest STT response kept, for `metadata.duration` of uploads whose length bytes cannot tell. */
export const MAX_KEPT_RESPONSE = 256 << 10;

export interface UsageObserverOptions {
  readonly sink: SpanSink;
  /** Called when building a span fails (a bug); the data path never sees the error. */
  readonly onError?: (err: unknown) => void;
}

/** A factory the edge calls once per exchange. */
export function createUsageObserverFactory(opts: UsageObserverOptions): ExchangeObserverFactory {
  return (exchange, decision) => new UsageObserver(exchange, decision, opts);
}

const elapsedMs = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

class UsageObserver implements ExchangeObserver {
  readonly #x: Exchange;
  readonly #decision: Decision;
  readonly #opts: UsageObserverOptions;
  readonly #meter: Meter;
  /** The query metering reads (`encoding`, `sample_rate`): the decision's upstream path. */
  readonly #query: string;
  readonly #spanId = newSpanId();
  #ended = false;
  #bytesIn = 0;
  #bytesOut = 0;
  readonly #head = new Uint8Array(WAV_HEAD_BYTES);
  #headBytes = 0;
  #keepResponse = false;
  #response: Uint8Array[] = [];
  #responseBytes = 0;
  #ttfbMs: number | undefined;
  #firstAudioMs: number | undefined;
  #firstTranscriptMs: number | undefined;
  #providerRequestId = '';
  #wsChars = 0;
  #wsAudioBytes = 0;
  readonly #sseAudio = sseAudioDetector();

  constructor(x: Exchange, decision: Decision, opts: UsageObserverOptions) {
    this.#x = x;
    this.#decision = decision;
    this.#opts = opts;
    this.#meter = decision.kind === 'allow' ? meterOf(decision.metadata) : 'none';
    this.#query = decision.metadata.upstream_path ?? x.pathWithQuery;
  }

  get #sttRest(): boolean {
    return this.#meter === 'stt-audio' && this.#x.routeKind !== 'websocket';
  }

  /**
   * Whether upstream WebSocket messages can stop being parsed. A TTS session carries no
   * transcriptions and an STT one no audio, so waiting for both would parse every (base64 audio)
   * message of a TTS session to the end.
   */
  get #wsTimingKnown(): boolean {
    if (this.#meter === 'tts-characters') return this.#firstAudioMs !== undefined;
    if (this.#meter === 'stt-audio') return this.#firstTranscriptMs !== undefined;
    return this.#firstAudioMs !== undefined && this.#firstTranscriptMs !== undefined;
  }

  requestChunk(chunk: Uint8Array): void {
    this.#bytesIn += chunk.byteLength;
    if (this.#sttRest && this.#headBytes < WAV_HEAD_BYTES) {
      const part = chunk.subarray(0, WAV_HEAD_BYTES - this.#headBytes);
      this.#head.set(part, this.#headBytes);
      this.#headBytes += part.byteLength;
    }
  }

  responseStart(_status: number, headers: Readonly<Record<string, string | string[] | undefined>>): void {
    this.#ttfbMs ??= elapsedMs(this.#x.startHr);
    const rid = headers['x-request-id'];
    this.#providerRequestId = (Array.isArray(rid) ? rid[0] : rid) ?? '';
    // Only uploads whose bytes cannot tell their length need the provider's `metadata.duration`.
    this.#keepResponse = this.#sttRest && !parseWavHeader(this.#head.subarray(0, this.#headBytes)) && !pcmFormat(this.#query);
  }

  responseChunk(chunk: Uint8Array): void {
    this.#bytesOut += chunk.byteLength;
    if (this.#x.routeKind === 'sse' && this.#firstAudioMs === undefined && this.#sseAudio(chunk)) {
      this.#firstAudioMs = elapsedMs(this.#x.startHr);
    }
    if (this.#keepResponse && this.#responseBytes < MAX_KEPT_RESPONSE) {
      this.#response.push(chunk);
      this.#responseBytes += chunk.byteLength;
    }
  }

  clientMessage(data: Uint8Array, isBinary: boolean): void {
    this.#bytesIn += data.byteLength;
    if (isBinary) this.#wsAudioBytes += data.byteLength;
    else if (this.#meter === 'tts-characters') this.#wsChars += ttsCharactersFromWsMessage(data);
  }

  upstreamMessage(data: Uint8Array, isBinary: boolean): void {
    this.#bytesOut += data.byteLength;
    if (isBinary || this.#wsTimingKnown) return;
    const kind = wsMessageKind(data);
    if (kind === 'chunk') this.#firstAudioMs ??= elapsedMs(this.#x.startHr);
    else if (kind === 'transcription') this.#firstTranscriptMs ??= elapsedMs(this.#x.startHr);
  }

  end(outcome: ExchangeEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      const x = this.#x;
      const durationMs = elapsedMs(x.startHr);
      const traceparent = headerValue(x, 'traceparent');
      this.#opts.sink.publish(
        buildSpan({
          source: 'edge',
          spanId: this.#spanId,
          requestId: x.requestId,
          startedAtMs: x.startedAtMs,
          durationMs,
          ...(this.#ttfbMs !== undefined ? { ttfbMs: this.#ttfbMs } : {}),
          ...(this.#firstAudioMs !== undefined ? { firstAudioMs: this.#firstAudioMs } : {}),
          ...(this.#firstTranscriptMs !== undefined ? { firstTranscriptMs: this.#firstTranscriptMs } : {}),
          method: x.method,
          path: x.pathWithQuery,
          status: outcome.status,
          ...(outcome.closeCode !== undefined ? { closeCode: outcome.closeCode } : {}),
          decision: this.#decision.kind,
          metadata: outcome.account !== undefined ? { ...this.#decision.metadata, account: outcome.account } : this.#decision.metadata,
          routeKind: this.#decision.metadata.route_kind ?? x.routeKind,
          bytesIn: this.#bytesIn,
          bytesOut: this.#bytesOut,
          usage: this.#usage(durationMs),
          ...(traceparent !== undefined ? { traceparent } : {}),
          providerRequestId: this.#providerRequestId,
          error: outcome.error ?? '',
          ...(outcome.endedBy !== undefined ? { endedBy: outcome.endedBy } : {}),
          ...(outcome.waitedMs !== undefined ? { waitedMs: outcome.waitedMs } : {}),
          ...(outcome.refusedBy !== undefined ? { refusedBy: outcome.refusedBy } : {}),
          snapshot: x.snapshot,
        }),
      );
    } catch (err) {
      this.#opts.onError?.(err);
    }
  }

  #usage(durationMs: number): Usage {
    const ws = this.#x.routeKind === 'websocket';
    if (this.#meter === 'tts-characters') {
      return ws ? { characters: this.#wsChars, estimated: false } : bodyCharacters(this.#decision.metadata, this.#bytesIn);
    }
    if (this.#meter !== 'stt-audio') return { estimated: false };
    if (!ws) {
      const m = meterSttRest(this.#head.subarray(0, this.#headBytes), this.#bytesIn, this.#query, concat(this.#response));
      return { ...(m.seconds !== undefined ? { audioSeconds: m.seconds } : {}), estimated: m.estimated };
    }
    const fmt = sttFormatFromPath(this.#query);
    if (fmt.bytesPerSample !== undefined) return { audioSeconds: pcmSeconds(this.#wsAudioBytes, fmt.sampleRate, fmt.bytesPerSample), estimated: false };
    // Compressed streams (opus): live audio arrives in real time, so the session length stands in.
    return { audioSeconds: audioSeconds(durationMs / 1000), estimated: true };
  }
}

function pcmFormat(pathWithQuery: string): boolean {
  const fmt = sttFormatFromPath(pathWithQuery);
  return fmt.explicit && fmt.bytesPerSample !== undefined;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks);
}
