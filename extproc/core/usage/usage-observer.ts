/**
 * Implements the edge's ExchangeObserverFactory: watches one exchange as the embedded edge
 * proxies it and builds exactly one usage span at `end()`.
 */
import type { ExchangeEnd, ExchangeObserver, ExchangeObserverFactory, ExchangeStart } from '../exchange/exchange-observer.ts';
import type { Snapshot } from '../config/snapshot.ts';
import type { SpanSink } from './span-sink.ts';
import {
  audioSeconds,
  meterSttRest,
  pcmSeconds,
  sseAudioDetector,
  sttFormatFromPath,
  ttsCharactersFromBody,
  ttsCharactersFromWsMessage,
  wsMessageKind,
} from './metering.ts';
import { costUsd, findModel, isBillableStatus } from './pricing.ts';
import { newSpanId, SPAN_SCHEMA, traceContext, type UsageSpan } from './span.ts';

/** Largest request body kept for metering (TTS JSON, WAV header); the rest is only counted. */
const MAX_KEPT_REQUEST = 1 << 20;
/** Largest STT response body kept (for `metadata.duration` of compressed uploads). */
const MAX_KEPT_RESPONSE = 256 << 10;

export interface UsageObserverOptions {
  readonly sink: SpanSink;
  readonly snapshot: () => Snapshot | undefined;
  /** Called when building a span fails (a bug); the data path never sees the error. */
  readonly onError?: (err: unknown) => void;
}

/** A factory the edge calls once per exchange. */
export function createUsageObserverFactory(opts: UsageObserverOptions): ExchangeObserverFactory {
  return (start) => new UsageObserver(start, opts);
}

const elapsedMs = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

class UsageObserver implements ExchangeObserver {
  readonly #start: ExchangeStart;
  readonly #opts: UsageObserverOptions;
  readonly #spanId = newSpanId();
  #ended = false;
  #bytesIn = 0;
  #bytesOut = 0;
  #requestKept: Uint8Array[] = [];
  #requestKeptBytes = 0;
  #responseKept: Uint8Array[] = [];
  #responseKeptBytes = 0;
  #ttfbMs: number | undefined;
  #firstAudioMs: number | undefined;
  #firstTranscriptMs: number | undefined;
  #providerRequestId = '';
  #wsChars = 0;
  #wsAudioBytes = 0;
  readonly #sseAudio = sseAudioDetector();

  constructor(start: ExchangeStart, opts: UsageObserverOptions) {
    this.#start = start;
    this.#opts = opts;
  }

  get #isStt(): boolean {
    return this.#start.metadata.model_type === 'stt';
  }

  /**
   * Whether upstream WebSocket messages can stop being parsed. A TTS session carries no
   * transcriptions and an STT one no audio, so waiting for both would parse every (base64 audio)
   * message of a TTS session to the end.
   */
  get #wsTimingKnown(): boolean {
    const type = this.#start.metadata.model_type;
    if (type === 'tts') return this.#firstAudioMs !== undefined;
    if (type === 'stt') return this.#firstTranscriptMs !== undefined;
    return this.#firstAudioMs !== undefined && this.#firstTranscriptMs !== undefined;
  }

  requestChunk(chunk: Uint8Array): void {
    this.#bytesIn += chunk.byteLength;
    if (this.#requestKeptBytes < MAX_KEPT_REQUEST) {
      this.#requestKept.push(chunk.slice(0, MAX_KEPT_REQUEST - this.#requestKeptBytes));
      this.#requestKeptBytes += Math.min(chunk.byteLength, MAX_KEPT_REQUEST - this.#requestKeptBytes);
    }
  }

  responseStart(_status: number, headers: Readonly<Record<string, string | string[] | undefined>>): void {
    this.#ttfbMs ??= elapsedMs(this.#start.startHr);
    const rid = headers['x-request-id'];
    this.#providerRequestId = (Array.isArray(rid) ? rid[0] : rid) ?? '';
  }

  responseChunk(chunk: Uint8Array): void {
    this.#bytesOut += chunk.byteLength;
    if (this.#start.routeKind === 'sse' && this.#firstAudioMs === undefined && this.#sseAudio(chunk)) {
      this.#firstAudioMs = elapsedMs(this.#start.startHr);
    }
    if (this.#isStt && this.#responseKeptBytes < MAX_KEPT_RESPONSE) {
      this.#responseKept.push(chunk);
      this.#responseKeptBytes += chunk.byteLength;
    }
  }

  clientMessage(data: Uint8Array, isBinary: boolean): void {
    this.#bytesIn += data.byteLength;
    if (isBinary) this.#wsAudioBytes += data.byteLength;
    else if (!this.#isStt) this.#wsChars += ttsCharactersFromWsMessage(data);
  }

  upstreamMessage(data: Uint8Array, isBinary: boolean): void {
    this.#bytesOut += data.byteLength;
    if (isBinary || this.#wsTimingKnown) return;
    const kind = wsMessageKind(data);
    if (kind === 'chunk') this.#firstAudioMs ??= elapsedMs(this.#start.startHr);
    else if (kind === 'transcription') this.#firstTranscriptMs ??= elapsedMs(this.#start.startHr);
  }

  end(outcome: ExchangeEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    try {
      this.#opts.sink.publish(this.#build(outcome));
    } catch (err) {
      this.#opts.onError?.(err);
    }
  }

  #build(outcome: ExchangeEnd): UsageSpan {
    const s = this.#start;
    const md = s.metadata;
    const durationMs = elapsedMs(s.startHr);
    const snapshot = this.#opts.snapshot();
    const provider = md.provider ?? '';
    const model = findModel(snapshot, provider, md.model ?? '');
    const modelType = md.model_type ?? model?.type ?? '';
    const requestBody = s.requestBody && s.requestBody.byteLength > this.#requestKeptBytes ? s.requestBody : concat(this.#requestKept);
    const bytesIn = Math.max(this.#bytesIn, s.requestBody?.byteLength ?? 0);

    let characters: number | undefined;
    let seconds: number | undefined;
    let estimated = false;
    if (s.decision === 'allow') {
      if (modelType === 'tts') {
        characters = s.routeKind === 'websocket' ? this.#wsChars : (ttsCharactersFromBody(requestBody) ?? md.characters);
      } else if (modelType === 'stt') {
        if (s.routeKind === 'websocket') {
          const fmt = sttFormatFromPath(s.path);
          if (fmt.bytesPerSample !== undefined) seconds = pcmSeconds(this.#wsAudioBytes, fmt.sampleRate, fmt.bytesPerSample);
          else {
            // Compressed streams (opus): live audio arrives in real time, so the session length stands in.
            seconds = audioSeconds(durationMs / 1000);
            estimated = true;
          }
        } else {
          const m = meterSttRest(requestBody, bytesIn, s.path, concat(this.#responseKept));
          seconds = m.seconds;
          estimated = m.estimated;
        }
      }
    }
    const status = outcome.status;
    const billable = s.decision === 'allow' && isBillableStatus(status) && !outcome.error;
    const tc = traceContext(s.headers['traceparent']);
    const upstream = snapshot?.providers.get(provider)?.upstream;
    return {
      schema: SPAN_SCHEMA,
      spanId: this.#spanId,
      traceId: tc.traceId,
      parentSpanId: tc.parentSpanId,
      source: 'edge',
      startTime: new Date(s.startedAtMs).toISOString(),
      endTime: new Date(s.startedAtMs + durationMs).toISOString(),
      durationMs: round3(durationMs),
      ...(this.#ttfbMs !== undefined ? { ttfbMs: round3(this.#ttfbMs) } : {}),
      ...(this.#firstAudioMs !== undefined ? { firstAudioMs: round3(this.#firstAudioMs) } : {}),
      ...(this.#firstTranscriptMs !== undefined ? { firstTranscriptMs: round3(this.#firstTranscriptMs) } : {}),
      method: s.method,
      path: s.path.split('?')[0] ?? '',
      status,
      ...(outcome.closeCode !== undefined ? { closeCode: outcome.closeCode } : {}),
      decision: s.decision,
      user: md.user ?? '',
      teams: splitTeams(md.teams),
      provider,
      model: md.model ?? '',
      modelType,
      account: md.account ?? '',
      routeKind: s.routeKind,
      endpoint: md.endpoint ?? '',
      requestId: s.requestId,
      providerRequestId: this.#providerRequestId,
      bytesIn,
      bytesOut: this.#bytesOut,
      ...(characters !== undefined ? { characters } : {}),
      ...(seconds !== undefined ? { audioSeconds: seconds } : {}),
      estimated,
      costUsd: billable ? costUsd(model?.price, s.routeKind, { characters, audioSeconds: seconds }) : '0',
      configVersion: md.config_version ?? snapshot?.version ?? 0,
      error: outcome.error ?? '',
      serverAddress: upstream ? hostOf(upstream) : '',
    };
  }
}

/** DecisionMetadata teams ("a,b") as a list. */
export function splitTeams(teams: string | undefined): string[] {
  return (teams ?? '').split(',').map((t) => t.trim()).filter((t) => t !== '');
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks);
}
