/**
 * Reads what the decision needs from a TTS JSON body: the `model` it names and how many characters
 * of `text` it carries. A body that is not JSON (or was truncated by Envoy's
 * `allow_partial_message`) yields nothing: the provider will judge it, the gateway does not.
 */
// Fatal: a byte sequence that is not UTF-8 could be read another way by the provider.
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface TtsBodyFacts {
  /** Whether the body parsed as a JSON object (a cut or non-JSON body does not). */
  readonly json: boolean;
  /** A top-level key the object names twice (by decoded name): parsers disagree on which wins. */
  readonly duplicateKey?: string;
  readonly model?: string;
  readonly characters?: number;
}

export function readTtsBody(body: Uint8Array): TtsBodyFacts {
  if (body.byteLength === 0 || body.byteLength > 1 << 20) return { json: false };
  let parsed: unknown;
  let source: string;
  try {
    source = decoder.decode(body);
    parsed = JSON.parse(source);
  } catch {
    return { json: false };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { json: false };
  const { model, text } = parsed as { model?: unknown; text?: unknown };
  const duplicateKey = firstDuplicateTopLevelKey(source);
  return {
    json: true,
    ...(duplicateKey !== undefined ? { duplicateKey } : {}),
    ...(typeof model === 'string' && model.length > 0 && model.length <= 128 ? { model } : {}),
    ...(typeof text === 'string' ? { characters: countCodePoints(text) } : {}),
  };
}

/**
 * The first top-level key of a valid JSON object text that appears twice, compared after decoding
 * escapes (`"mod\\u0065l"` is `model`). JSON.parse keeps the last; other parsers keep the first.
 */
export function firstDuplicateTopLevelKey(source: string): string | undefined {
  // Runs on every TTS body and every client frame of a TTS WebSocket: char codes, no regex, and a
  // key is decoded with JSON.parse only when it holds an escape. The text is valid JSON (callers
  // parsed it first), so only JSON whitespace (space, tab, LF, CR) can sit between a key and `:`.
  let seen: Set<string> | undefined;
  let first: string | undefined;
  let depth = 0;
  const n = source.length;
  for (let i = 0; i < n; i++) {
    const c = source.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; source.charCodeAt(i) !== 0x22; i++) {
        if (source.charCodeAt(i) === 0x5c /* \ */) {
          escaped = true;
          i++;
        }
      }
      if (depth !== 1) continue;
      let j = i + 1;
      for (let w = source.charCodeAt(j); w === 0x20 || w === 0x09 || w === 0x0a || w === 0x0d; w = source.charCodeAt(++j));
      if (source.charCodeAt(j) !== 0x3a /* : */) continue;
      const key = escaped ? (JSON.parse(source.slice(start, i + 1)) as string) : source.slice(start + 1, i);
      // Most objects have few keys: compare against the first before building a set.
      if (first === undefined) {
        first = key;
        continue;
      }
      if (seen === undefined) {
        if (key === first) return key;
        seen = new Set([first]);
      } else if (seen.has(key)) return key;
      seen.add(key);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) depth++;
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
  }
  return undefined;
}

/** Unicode code points, which is what a person counts as characters (emoji count once). */
export function countCodePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A high surrogate followed by a low one is a single code point.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}
