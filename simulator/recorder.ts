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
