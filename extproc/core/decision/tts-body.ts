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
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '"') {
      const start = i;
      for (i++; source[i] !== '"'; i++) if (source[i] === '\\') i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (j < source.length && /\s/.test(source[j] ?? '')) j++;
      if (source[j] !== ':') continue;
      const key = JSON.parse(source.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
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
