/**
 * ITU-T G.711 companding (µ-law and A-law), following the segment tables of the classic
 * reference implementation (Sun Microsystems g711.c), so bytes match what telephony stacks,
 * sox and Python's audioop produce.
 */

const SEG_UEND = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff] as const;
const SEG_AEND = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff] as const;
const ULAW_BIAS = 0x84;
const ULAW_CLIP = 8159;

function segment(value: number, table: readonly number[]): number {
  for (let i = 0; i < table.length; i++) if (value <= table[i]!) return i;
  return table.length;
}

/** Encodes one signed 16-bit sample to a µ-law byte. */
export function linearToUlaw(sample: number): number {
  let pcm = sample >> 2;
  let mask: number;
  if (pcm < 0) {
    pcm = -pcm;
    mask = 0x7f;
  } else {
    mask = 0xff;
  }
  if (pcm > ULAW_CLIP) pcm = ULAW_CLIP;
  pcm += ULAW_BIAS >> 2;
  const seg = segment(pcm, SEG_UEND);
  if (seg >= 8) return 0x7f ^ mask;
  return (((seg << 4) | ((pcm >> (seg + 1)) & 0xf)) ^ mask) & 0xff;
}

/** Decodes one µ-law byte to a signed 16-bit sample. */
export function ulawToLinear(byte: number): number {
  const u = ~byte & 0xff;
  let t = ((u & 0x0f) << 3) + ULAW_BIAS;
  t <<= (u & 0x70) >> 4;
  return u & 0x80 ? ULAW_BIAS - t : t - ULAW_BIAS;
}

/** Encodes one signed 16-bit sample to an A-law byte. */
export function linearToAlaw(sample: number): number {
  let pcm = sample >> 3;
  let mask: number;
  if (pcm >= 0) {
    mask = 0xd5;
  } else {
    mask = 0x55;
    pcm = -pcm - 1;
  }
  const seg = segment(pcm, SEG_AEND);
  if (seg >= 8) return 0x7f ^ mask;
  let a = seg << 4;
  a |= seg < 2 ? (pcm >> 1) & 0xf : (pcm >> seg) & 0xf;
  return (a ^ mask) & 0xff;
}

/** Decodes one A-law byte to a signed 16-bit sample. */
export function alawToLinear(byte: number): number {
  const a = (byte ^ 0x55) & 0xff;
  let t = (a & 0x0f) << 4;
  const seg = (a & 0x70) >> 4;
  if (seg === 0) t += 8;
  else if (seg === 1) t += 0x108;
  else t = (t + 0x108) << (seg - 1);
  return a & 0x80 ? t : -t;
}

// 64 Ki-entry tables turn encoding into one lookup per sample (hot path for ulaw/alaw output).
let ulawTable: Uint8Array | undefined;
let alawTable: Uint8Array | undefined;

function table(kind: 'ulaw' | 'alaw'): Uint8Array {
  if (kind === 'ulaw') {
    if (!ulawTable) {
      ulawTable = new Uint8Array(65536);
      for (let i = 0; i < 65536; i++) ulawTable[i] = linearToUlaw((i << 16) >> 16);
    }
    return ulawTable;
  }
  if (!alawTable) {
    alawTable = new Uint8Array(65536);
    for (let i = 0; i < 65536; i++) alawTable[i] = linearToAlaw((i << 16) >> 16);
  }
  return alawTable;
}

/** Encodes s16le PCM bytes to G.711 bytes (one byte per sample). */
export function encodeG711(pcm: Uint8Array, kind: 'ulaw' | 'alaw'): Buffer {
  const t = table(kind);
  const n = pcm.length >> 1;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = t[pcm[2 * i]! | (pcm[2 * i + 1]! << 8)]!;
  return out;
}

/** Decodes G.711 bytes to signed 16-bit samples. */
export function decodeG711(bytes: Uint8Array, kind: 'ulaw' | 'alaw'): Int16Array {
  const out = new Int16Array(bytes.length);
  const f = kind === 'ulaw' ? ulawToLinear : alawToLinear;
  for (let i = 0; i < bytes.length; i++) out[i] = f(bytes[i]!);
  return out;
}
