/**
 * Reads what the decision needs from a TTS JSON body: the `model` it names and how many characters
 * of `text` it carries. A body that is not JSON (or was truncated by Envoy's
 * `allow_partial_message`) yields nothing: the provider will judge it, the gateway does not.
 */
const decoder = new TextDecoder('utf-8', { fatal: false });

export interface TtsBodyFacts {
  /** Whether the body parsed as a JSON object (a cut or non-JSON body does not). */
  readonly json: boolean;
  readonly model?: string;
  readonly characters?: number;
}

export function readTtsBody(body: Uint8Array): TtsBodyFacts {
  if (body.byteLength === 0 || body.byteLength > 1 << 20) return { json: false };
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(body));
  } catch {
    return { json: false };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { json: false };
  const { model, text } = parsed as { model?: unknown; text?: unknown };
  return {
    json: true,
    ...(typeof model === 'string' && model.length > 0 && model.length <= 128 ? { model } : {}),
    ...(typeof text === 'string' ? { characters: countCodePoints(text) } : {}),
  };
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
