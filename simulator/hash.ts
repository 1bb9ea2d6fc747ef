/** 32-bit FNV-1a offset basis; also the seed to start an incremental hash with. */
export const FNV_OFFSET = 0x811c9dc5;

/**
 * 32-bit FNV-1a over bytes, continuing from `seed` so a stream can be hashed in pieces.
 * Used for determinism only (same input → same audio / transcript), never for security.
 */
export function fnv1aBytes(bytes: Uint8Array, seed = FNV_OFFSET, start = 0, end = bytes.length): number {
  let h = seed >>> 0;
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** 32-bit FNV-1a over the UTF-16 code units of a string. */
export function fnv1aString(text: string, seed = FNV_OFFSET): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Small deterministic PRNG (mulberry32) so generated audio and transcripts repeat exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
