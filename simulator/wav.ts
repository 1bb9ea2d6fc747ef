/** WAV (RIFF/WAVE) header writing for TTS output and header parsing for STT input. */

/** WAVE format tags the STT side understands (RFC 2361 registry values). */
export const WAVE_FORMAT = { pcm: 1, float: 3, alaw: 6, mulaw: 7, extensible: 0xfffe } as const;

/** Builds a 44-byte canonical RIFF header for `dataBytes` of mono audio. */
export function wavHeader(dataBytes: number, sampleRate: number, bitsPerSample: number, formatTag: number): Buffer {
  const h = Buffer.alloc(44);
  const blockAlign = bitsPerSample >> 3;
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(Math.min(36 + dataBytes, 0xffffffff), 4); // streaming writers use 0xFFFFFFFF
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(formatTag, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * blockAlign, 28);
  h.writeUInt16LE(blockAlign, 32);
  h.writeUInt16LE(bitsPerSample, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}

export interface WavInfo {
  readonly formatTag: number;
  readonly channels: number;
  readonly sampleRate: number;
  readonly bitsPerSample: number;
  /** Offset of the first audio byte. */
  readonly dataOffset: number;
  /** Audio bytes actually present (the declared size, capped by what was received). */
  readonly dataBytes: number;
}

/** Whether the bytes start like a RIFF/WAVE file. */
export function looksLikeWav(head: Uint8Array): boolean {
  return (
    head.length >= 12 &&
    Buffer.from(head.buffer, head.byteOffset, 12).toString('latin1', 0, 4) === 'RIFF' &&
    Buffer.from(head.buffer, head.byteOffset, 12).toString('latin1', 8, 12) === 'WAVE'
  );
}

/**
 * Parses the chunks of a RIFF/WAVE file. `head` holds at least the first bytes up to the data
 * chunk header; `totalBytes` is the full body size (streaming writers put 0 or 0xFFFFFFFF in the
 * size fields, so the received length wins). Returns undefined when it is not a usable WAV.
 */
export function parseWav(head: Uint8Array, totalBytes: number): WavInfo | undefined {
  if (!looksLikeWav(head)) return undefined;
  const b = Buffer.from(head.buffer, head.byteOffset, head.length);
  let off = 12;
  let fmt: Omit<WavInfo, 'dataOffset' | 'dataBytes'> | undefined;
  while (off + 8 <= b.length) {
    const id = b.toString('latin1', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > b.length) return undefined;
      let formatTag = b.readUInt16LE(body);
      if (formatTag === WAVE_FORMAT.extensible && size >= 26 && body + 26 <= b.length) {
        formatTag = b.readUInt16LE(body + 24); // first two bytes of the SubFormat GUID
      }
      fmt = {
        formatTag,
        channels: b.readUInt16LE(body + 2),
        sampleRate: b.readUInt32LE(body + 4),
        bitsPerSample: b.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!fmt || fmt.channels === 0 || fmt.sampleRate === 0 || fmt.bitsPerSample === 0) return undefined;
      const present = Math.max(0, totalBytes - body);
      const declared = size === 0 || size === 0xffffffff ? present : size;
      return { ...fmt, dataOffset: body, dataBytes: Math.min(declared, present) };
    }
    off = body + size + (size & 1); // chunks are word aligned
  }
  return undefined;
}

/** Seconds of audio described by a parsed header. */
export function wavDurationSec(info: WavInfo): number {
  const bytesPerSec = info.sampleRate * info.channels * (info.bitsPerSample / 8);
  return bytesPerSec > 0 ? info.dataBytes / bytesPerSec : 0;
}
