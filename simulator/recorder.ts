/** The last requests and upgrades that reached the simulator, for tests to assert on. */
import type { IncomingHttpHeaders } from 'node:http';

/** One request (or WebSocket upgrade) as it arrived. */
export interface RecordedRequest {
  method: string;
  /** Path and query exactly as received. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  upgrade: boolean;
}

/** One client message received on a TTS WebSocket. */
export interface RecordedFrame {
  /** Path and query of the upgrade that opened the socket. */
  url: string;
  binary: boolean;
  /** The message as UTF-8 text (binary ones too), cut at {@link MAX_RECORDED_FRAME_CHARS}. */
  text: string;
  bytes: number;
}

export const MAX_RECORDED_FRAME_CHARS = 4096;

/** Fixed-size ring of recorded client frames (oldest dropped first). */
export class FrameRecorder {
  readonly #ring: RecordedFrame[] = [];

  constructor(readonly capacity = 1000) {}

  record(url: string | undefined, data: Buffer, binary: boolean): void {
    if (this.#ring.length === this.capacity) this.#ring.shift();
    this.#ring.push({ url: url ?? '/', binary, text: data.subarray(0, MAX_RECORDED_FRAME_CHARS * 4).toString('utf8').slice(0, MAX_RECORDED_FRAME_CHARS), bytes: data.length });
  }

  /** Oldest first. */
  list(): RecordedFrame[] {
    return [...this.#ring];
  }
}

/** Fixed-size ring of recorded requests (oldest dropped first). */
export class RequestRecorder {
  readonly #ring: (RecordedRequest | undefined)[];
  #next = 0;
  #count = 0;

  constructor(readonly capacity = 1000) {
    this.#ring = new Array<RecordedRequest | undefined>(capacity);
  }

  record(method: string | undefined, url: string | undefined, headers: IncomingHttpHeaders, upgrade: boolean): void {
    this.#ring[this.#next] = { method: method ?? 'GET', url: url ?? '/', headers: { ...headers }, upgrade };
    this.#next = (this.#next + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
  }

  /** Oldest first. */
  list(): RecordedRequest[] {
    const out: RecordedRequest[] = [];
    const start = (this.#next - this.#count + this.capacity) % this.capacity;
    for (let i = 0; i < this.#count; i++) out.push(this.#ring[(start + i) % this.capacity]!);
    return out;
  }
}
