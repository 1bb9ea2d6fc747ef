/**
 * Deterministic "speech": 16-bit mono samples built from a bank of pre-rendered 100 ms syllables
 * (a voiced pitch with a few formant-like harmonics under a smooth envelope), one syllable per
 * 100 ms picked from the text. Same text, rate and speed → the same bytes, and synthesis is only
 * buffer copies, so the `instant` profile stays cheap on the benchmark hot path.
 */
import { fnv1aString, mulberry32 } from './hash.ts';

/** Characters of text per second of speech at speed 1 (≈ 2.7 s for a 45-character sentence). */
export const CHARS_PER_SECOND = 16;
const SYLLABLE_SEC = 0.1;
const SYLLABLES = 16;

const banks = new Map<number, Buffer[]>();

function renderBank(sampleRate: number): Buffer[] {
  const len = Math.round(sampleRate * SYLLABLE_SEC);
  const rnd = mulberry32(0x5eed);
  const bank: Buffer[] = [Buffer.alloc(len * 2)]; // syllable 0: a pause, used for spaces
  for (let k = 1; k < SYLLABLES; k++) {
    const f0 = 95 + rnd() * 130;
    const f1 = 300 + rnd() * 600;
    const f2 = 900 + rnd() * 1400;
    const buf = Buffer.alloc(len * 2);
    for (let i = 0; i < len; i++) {
      const t = i / sampleRate;
      const env = Math.sin((Math.PI * i) / len) ** 2;
      const v =
        0.55 * Math.sin(2 * Math.PI * f0 * t) +
        0.3 * Math.sin(2 * Math.PI * f1 * t) * Math.sin(2 * Math.PI * f0 * 0.5 * t) +
        0.15 * Math.sin(2 * Math.PI * Math.min(f2, sampleRate * 0.45) * t);
      buf.writeInt16LE(Math.round(v * env * 9000), i * 2);
    }
    bank.push(buf);
  }
  return bank;
}

function bankFor(sampleRate: number): Buffer[] {
  let b = banks.get(sampleRate);
  if (!b) {
    b = renderBank(sampleRate);
    banks.set(sampleRate, b);
  }
  return b;
}

/** Number of samples the simulator speaks for `text` (at least one syllable's worth). */
export function speechSamples(text: string, sampleRate: number, speed: number): number {
  const seconds = Math.max(1, text.length) / CHARS_PER_SECOND / speed;
  return Math.max(1, Math.round(sampleRate * seconds));
}

/** Renders `text` as s16le mono PCM at `sampleRate`, `speed` (0.5–2) scaling the duration. */
export function synthesizePcm(text: string, sampleRate: number, speed: number): Buffer {
  const total = speechSamples(text, sampleRate, speed);
  const bank = bankFor(sampleRate);
  const segLen = bank[0]!.length >> 1;
  const out = Buffer.allocUnsafe(total * 2);
  const seed = fnv1aString(text);
  const segments = Math.ceil(total / segLen);
  const chars = Math.max(1, text.length);
  for (let s = 0; s < segments; s++) {
    const c = text.charCodeAt(Math.floor((s * chars) / segments)) || 32;
    const pause = c === 32 || c === 44 || c === 46 || c === 10;
    const idx = pause ? 0 : 1 + ((c * 31 + seed + s) % (SYLLABLES - 1));
    const start = s * segLen * 2;
    const bytes = Math.min(segLen * 2, out.length - start);
    bank[idx]!.copy(out, start, 0, bytes);
  }
  return out;
}
