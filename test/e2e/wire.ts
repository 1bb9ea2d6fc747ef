/**
 * What the end-to-end tests read off the wire: WAV headers, SSE frames, and a ledger of every
 * response a client saw, so a file can prove no provider key was ever among them.
 */
import type { RecordedRequest } from '../../simulator/index.ts';

export interface WavInfo {
  readonly format: number;
  readonly channels: number;
  readonly sampleRate: number;
  readonly bitsPerSample: number;
  readonly dataBytes: number;
  readonly seconds: number;
}

/** Parses a RIFF/WAVE file, walking its chunks; throws on anything that is not one. */
export function parseWav(buf: Buffer): WavInfo {
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error(`not a RIFF/WAVE file (starts with ${JSON.stringify(buf.subarray(0, 12).toString('latin1'))})`);
  }
  if (buf.readUInt32LE(4) !== buf.length - 8) throw new Error(`RIFF size ${buf.readUInt32LE(4)} does not match ${buf.length - 8} bytes`);
  let fmt: Omit<WavInfo, 'dataBytes' | 'seconds'> & { byteRate: number } | undefined;
  let offset = 12;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    const size = buf.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      fmt = {
        format: buf.readUInt16LE(body),
        channels: buf.readUInt16LE(body + 2),
        sampleRate: buf.readUInt32LE(body + 4),
        byteRate: buf.readUInt32LE(body + 8),
        bitsPerSample: buf.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!fmt) throw new Error('data chunk before fmt chunk');
      if (body + size > buf.length) throw new Error(`data chunk claims ${size} bytes, file has ${buf.length - body}`);
      const { byteRate, ...rest } = fmt;
      return { ...rest, dataBytes: size, seconds: size / byteRate };
    }
    offset = body + size + (size & 1);
  }
  throw new Error('no data chunk');
}

export interface SseFrame {
  readonly event: string | undefined;
  readonly data: { audio?: string; done?: boolean; status?: string };
}

/** Splits an event stream into frames (blank-line separated, `event:` and `data:` lines). */
export function parseSse(text: string): SseFrame[] {
  const frames: SseFrame[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    frames.push({ event, data: JSON.parse(data.join('\n')) as SseFrame['data'] });
  }
  return frames;
}

/** Every response (headers, bodies, frames) clients saw, to search for secrets afterwards. */
export class ResponseLedger {
  readonly #entries: Array<{ what: string; text: string }> = [];

  /** Records one response or frame; headers in any shape fetch, undici or ws hand out. */
  add(what: string, headers: Headers | Record<string, unknown> | undefined, body: string | Buffer | Uint8Array = ''): void {
    const h = headers instanceof Headers ? Object.fromEntries(headers.entries()) : (headers ?? {});
    const b = typeof body === 'string' ? body : Buffer.from(body).toString('latin1');
    this.#entries.push({ what, text: `${JSON.stringify(h)}\n${b}` });
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Which recorded responses contain `secret` (empty when none). */
  containing(secret: string): string[] {
    return this.#entries.filter((e) => e.text.includes(secret)).map((e) => e.what);
  }
}

/** Requests that reached the upstream carrying one of `secrets` in their URL or headers. */
export function upstreamRequestsContaining(requests: readonly RecordedRequest[], secrets: readonly string[]): string[] {
  return requests.filter((r) => secrets.some((s) => r.url.includes(s) || JSON.stringify(r.headers).includes(s))).map((r) => `${r.method} ${r.url}`);
}
